"""Foreign keys added NOT VALID then validated side by side: same end state, same refusals."""

from __future__ import annotations

import psycopg2
import pytest

from pagila_tasks import config
from pagila_tasks.pg.db import CATALOG_PATH, connection
from pagila_tasks.replication import fkeys, schema
from tests.support import query

PARENT_CHILD = """
CREATE TABLE public.parent (id int PRIMARY KEY);
CREATE TABLE public.other (id int PRIMARY KEY);
CREATE TABLE public.child (id int PRIMARY KEY, parent_id int, other_id int,
    CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES public.parent (id)
        ON UPDATE CASCADE ON DELETE RESTRICT,
    CONSTRAINT child_other_fk FOREIGN KEY (other_id) REFERENCES public.other (id)
        DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE public.part (id int, parent_id int REFERENCES public.parent (id))
    PARTITION BY RANGE (id);
CREATE TABLE public.part_1 PARTITION OF public.part FOR VALUES FROM (0) TO (100);
INSERT INTO public.parent SELECT generate_series(1, 50);
INSERT INTO public.other SELECT generate_series(1, 50);
INSERT INTO public.child SELECT g, g, g FROM generate_series(1, 50) g;
INSERT INTO public.part SELECT g, g FROM generate_series(1, 50) g;
"""

DEFINITIONS = """
SELECT conrelid::regclass::text, conname, convalidated, pg_get_constraintdef(oid)
FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def test_interleaved_puts_one_tables_keys_apart() -> None:
    """Keys of one table never sit side by side while another table still has keys."""
    keys = [fkeys.ForeignKey("s", "a", f"a{i}", "") for i in range(3)] + [
        fkeys.ForeignKey("s", "b", "b0", ""),
        fkeys.ForeignKey("s", "c", "c0", ""),
    ]
    order = [fk.table for fk in fkeys.interleaved(keys)]
    assert order == ["a", "b", "c", "a", "a"]
    assert sorted(fk.name for fk in fkeys.interleaved(keys)) == sorted(fk.name for fk in keys)
    assert fkeys.interleaved([]) == []


def test_listing_leaves_out_foreign_keys_and_schemas() -> None:
    """FK CONSTRAINT entries (when asked), SCHEMA entries and comments leave a listing."""
    toc = (
        ";\n; Archive created\n;\n"
        "5; 2615 2200 SCHEMA - public pg_database_owner\n"
        "6; 0 0 COMMENT - SCHEMA public pg_database_owner\n"
        "3; 2606 16 CONSTRAINT public rental rental_pkey pagila\n"
        "4; 2606 17 FK CONSTRAINT public rental rental_inventory_id_fkey pagila\n"
        "5; 1259 18 INDEX public idx_fk_inventory_id pagila\n"
    )
    out = schema.listing(toc, foreign_keys=False)
    assert "rental_pkey" in out and "idx_fk_inventory_id" in out
    assert "COMMENT - SCHEMA public" in out and "2615 2200 SCHEMA" not in out
    assert "FK CONSTRAINT" not in out and not out.startswith(";")
    assert "FK CONSTRAINT" in schema.listing(toc, foreign_keys=True)


def test_added_then_validated_ends_as_the_source(servers) -> None:
    """After drop, add and validate, every key is back, validated, with the same definition."""
    s = config.from_env()
    query(servers.target_dsn, PARENT_CHILD)
    before = query(servers.target_dsn, DEFINITIONS)
    assert len(before) == 4 and all(row[2] for row in before)  # part_1 inherits part's key
    with connection(s.target_dsn, s, "pagila-test") as conn:
        with conn.cursor() as cur:
            keys = fkeys.read(cur, ("public",))
        assert len(keys) == 3 and {fk.name for fk in keys} <= {row[1] for row in before}
        fkeys.drop(conn, keys)
        assert query(servers.target_dsn, DEFINITIONS) == []
        with conn.cursor() as cur:
            pending = fkeys.add(cur, keys)
            # the partitioned table's key is added checked; the others wait for validation
            assert {fk.table for fk in pending} == {"child"}
            assert fkeys.add(cur, keys) == pending  # a second call adds nothing twice
        conn.commit()
    fkeys.validate(s, pending, 2, "pagila-test")
    assert query(servers.target_dsn, DEFINITIONS) == before


def test_validation_refuses_a_dangling_row(servers) -> None:
    """A row without its parent fails validation, naming the constraint."""
    s = config.from_env()
    query(servers.target_dsn, PARENT_CHILD)
    with connection(s.target_dsn, s, "pagila-test") as conn:
        with conn.cursor() as cur:
            keys = [fk for fk in fkeys.read(cur, ("public",)) if fk.name == "child_parent_fk"]
        fkeys.drop(conn, keys)
        query(servers.target_dsn, "INSERT INTO public.child VALUES (99, 999, 1)")
        with conn.cursor() as cur:
            pending = fkeys.add(cur, keys)
        conn.commit()
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="child_parent_fk"):
        fkeys.validate(s, pending, 2, "pagila-test")


def test_definitions_are_qualified_whatever_the_search_path(servers) -> None:
    """Read as pg_dump reads them, keys name their tables' schemas even when the database's
    search_path would hide them; a NOT VALID key is added back NOT VALID and left so."""
    s = config.from_env()
    query(
        servers.target_dsn,
        "CREATE SCHEMA app; CREATE TABLE app.b (id int PRIMARY KEY); "
        "CREATE TABLE public.a (id int PRIMARY KEY, b_id int REFERENCES app.b (id)); "
        "ALTER TABLE public.a ADD CONSTRAINT a_self FOREIGN KEY (id) REFERENCES public.a (id) "
        "NOT VALID",
    )
    dsn = f"{servers.target_dsn}?options=-c%20search_path%3Dpublic,app"
    with connection(dsn, s, "pagila-test", search_path=CATALOG_PATH) as conn:
        with conn.cursor() as cur:
            keys = {fk.name: fk for fk in fkeys.read(cur, ("public", "app"))}
        assert keys["a_b_id_fkey"].definition == "FOREIGN KEY (b_id) REFERENCES app.b(id)"
        assert keys["a_self"].validated is False
        fkeys.drop(conn, list(keys.values()))
        with conn.cursor() as cur:
            pending = fkeys.add(cur, list(keys.values()))
        conn.commit()
    assert [fk.name for fk in pending] == ["a_b_id_fkey"]
    fkeys.validate(s, pending, 2, "pagila-test")
    rows = dict(
        query(
            servers.target_dsn,
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE conname IN ('a_b_id_fkey', 'a_self')",
        )
    )
    assert rows == {"a_b_id_fkey": True, "a_self": False}
    query(servers.target_dsn, "DROP SCHEMA app CASCADE")


def test_post_data_statements_naming_only_their_table_are_taken_apart() -> None:
    """An index or key that names no replicated object but its own table is rewritten to the
    build schema; one naming a function, another table or a partitioned index stays as live."""
    script = (
        "SET statement_timeout = 0;\n\n"
        "--\n-- Name: actor actor_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n"
        "ALTER TABLE ONLY public.actor\n    ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);\n\n"
        "--\n-- Name: idx_title; Type: INDEX; Schema: Sales; Owner: -\n--\n\n"
        "SET default_tablespace = '';\n"
        'CREATE INDEX idx_title ON "Sales".film USING btree (title);\n\n'
        "--\n-- Name: idx_f; Type: INDEX; Schema: public; Owner: -\n--\n\n"
        "CREATE INDEX idx_f ON public.film USING btree (public.f(title));\n\n"
        "--\n-- Name: p_pkey_1; Type: INDEX ATTACH; Schema: public; Owner: -\n--\n\n"
        "ALTER INDEX public.p_pkey ATTACH PARTITION public.p1_pkey;\n\n"
        "--\n-- Name: t; Type: TRIGGER; Schema: public; Owner: -\n--\n\n"
        "CREATE TRIGGER t BEFORE UPDATE ON public.actor FOR EACH ROW EXECUTE FUNCTION public.f();\n"
    )
    apart, rest = schema.split_post_data(script, {"public": "stage_p", "Sales": "stage_s"})
    assert apart == [
        "ALTER TABLE ONLY stage_p.actor\n    ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);",
        "CREATE INDEX idx_title ON stage_s.film USING btree (title);",
    ]
    assert "public.f(title)" in rest and "ATTACH PARTITION" in rest and "CREATE TRIGGER" in rest
    assert "actor_pkey" not in rest and "idx_title" not in rest
    assert rest.startswith("SET statement_timeout = 0;")
