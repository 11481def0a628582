"""Which foreign keys the copies add early, and how their definitions reach the build schemas."""

from __future__ import annotations

from pglast import parse_sql

from pagila_tasks.replication import earlykeys
from pagila_tasks.replication.fkeys import ForeignKey
from pagila_tasks.run.model import ReplicationPlan

TARGETS = {"public": "pagila_build_1", "My Schema": "pagila_build_2"}
COPIED = {"public.rental", "public.customer", '"My Schema"."Odd ""t"""', "public.payment_p2022_01"}


def fk(schema: str, table: str, name: str, definition: str, validated: bool = True) -> ForeignKey:
    return ForeignKey(schema, table, name, definition, validated)


def test_a_key_between_two_copied_tables_is_rewritten_to_their_build_schemas() -> None:
    keys = earlykeys.planned(
        [
            fk(
                "public",
                "rental",
                "rental_customer_id_fkey",
                "FOREIGN KEY (customer_id) REFERENCES public.customer(customer_id) "
                "ON UPDATE CASCADE ON DELETE RESTRICT",
            )
        ],
        TARGETS,
        COPIED,
    )
    assert [(k.table, k.references, k.name) for k in keys] == [
        ("public.rental", "public.customer", "rental_customer_id_fkey")
    ]
    stmt = parse_sql(keys[0].statement)[0].stmt
    assert (stmt.relation.schemaname, stmt.relation.relname) == ("pagila_build_1", "rental")
    con = stmt.cmds[0].def_
    assert (con.pktable.schemaname, con.pktable.relname) == ("pagila_build_1", "customer")
    assert con.conname == "rental_customer_id_fkey"
    assert "ON DELETE RESTRICT" in keys[0].statement and "NOT VALID" not in keys[0].statement


def test_a_key_is_added_not_valid_then_validated_on_its_build_table() -> None:
    """The add takes its self-conflicting lock only for a moment; the check comes after."""
    (key,) = earlykeys.planned(
        [
            fk(
                "My Schema",
                'Odd "t"',
                'k"1',
                "FOREIGN KEY (a) REFERENCES public.customer(customer_id) "
                "DEFERRABLE INITIALLY DEFERRED",
            )
        ],
        TARGETS,
        COPIED,
    )
    statement, table = earlykeys.not_valid(key)
    assert table == ("pagila_build_2", 'Odd "t"')
    con = parse_sql(statement)[0].stmt.cmds[0].def_
    assert con.skip_validation and not con.initially_valid and con.deferrable
    assert statement.endswith("NOT VALID") and "NOT VALID" not in key.statement


def test_quoted_names_across_schemas_survive_the_rewrite() -> None:
    keys = earlykeys.planned(
        [
            fk(
                "My Schema",
                'Odd "t"',
                'k"1',
                'FOREIGN KEY ("Cust") REFERENCES public.customer(customer_id) MATCH FULL',
            )
        ],
        TARGETS,
        COPIED,
    )
    assert len(keys) == 1
    stmt = parse_sql(keys[0].statement)[0].stmt
    assert (stmt.relation.schemaname, stmt.relation.relname) == ("pagila_build_2", 'Odd "t"')
    assert stmt.cmds[0].def_.conname == 'k"1'
    assert stmt.cmds[0].def_.pktable.schemaname == "pagila_build_1"
    assert keys[0].references == "public.customer"


def test_keys_the_callback_keeps_are_not_planned() -> None:
    to_customer = "FOREIGN KEY (customer_id) REFERENCES public.customer(customer_id)"
    keys = earlykeys.planned(
        [
            fk("public", "rental", "not_valid", to_customer, validated=False),
            fk("public", "payment", "on_a_parent", to_customer),  # partitioned: not a unit
            fk("public", "rental", "to_parent", "FOREIGN KEY (x) REFERENCES public.payment(id)"),
            fk("public", "rental", "outside", "FOREIGN KEY (x) REFERENCES other.t(id)"),
            fk("other", "t", "from_outside", to_customer),
            fk("public", "payment_p2022_01", "on_a_leaf", to_customer),
            fk("public", "rental", "newer_syntax", to_customer + " SOMETHING PG 99 SAYS"),
        ],
        TARGETS,
        COPIED,
    )
    assert [k.name for k in keys] == ["on_a_leaf"]


def test_a_key_is_ready_when_both_of_its_tables_are_built() -> None:
    keys = earlykeys.planned(
        [
            fk("public", "rental", "a", "FOREIGN KEY (c) REFERENCES public.customer(c)"),
            fk("public", "customer", "self", "FOREIGN KEY (c) REFERENCES public.customer(c)"),
        ],
        TARGETS,
        COPIED,
    )
    assert [k.name for k in earlykeys.ready(keys, "public.rental", {"public.rental"})] == []
    both = {"public.rental", "public.customer"}
    assert [k.name for k in earlykeys.ready(keys, "public.rental", both)] == ["a"]
    assert [k.name for k in earlykeys.ready(keys, "public.customer", both)] == ["a", "self"]
    assert earlykeys.tables(keys) == {"public.rental", "public.customer"}


def test_the_plan_carries_the_keys_and_says_which_tables_build_early() -> None:
    keys = earlykeys.planned(
        [fk("public", "rental", "a", "FOREIGN KEY (c) REFERENCES public.customer(c)")],
        TARGETS,
        COPIED,
    )
    plan = ReplicationPlan(
        schemas=("public",),
        swap=True,
        targets=TARGETS,
        units=(),
        table_keys=(),
        early_keys=tuple(tuple(k.as_list()) for k in keys),  # type: ignore[misc]
        indexes={"public.film": ("CREATE INDEX ...",)},
    )
    again = ReplicationPlan.from_json(plan.as_json())
    assert earlykeys.of_plan(again) == keys
    assert [
        t
        for t in ("public.rental", "public.customer", "public.film", "public.staff")
        if again.builds_early(t)
    ] == ["public.rental", "public.customer", "public.film"]
