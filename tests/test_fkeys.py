"""Foreign keys added NOT VALID then validated side by side: same end state, same refusals."""

from __future__ import annotations

import psycopg2
import pytest

from pagila_tasks import config, fkeys, schema
from pagila_tasks.db import connection
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
    keys = [fkeys.ForeignKey("a", f"a{i}", "") for i in range(3)] + [
        fkeys.ForeignKey("b", "b0", ""),
        fkeys.ForeignKey("c", "c0", ""),
    ]
    order = [fk.table for fk in fkeys.interleaved(keys)]
    assert order == ["a", "b", "c", "a", "a"]
    assert sorted(fk.name for fk in fkeys.interleaved(keys)) == sorted(fk.name for fk in keys)
    assert fkeys.interleaved([]) == []


def test_without_foreign_keys_filters_a_listing() -> None:
    """Only the FK CONSTRAINT entries (and comments) leave a pg_restore -l listing."""
    toc = (
        ";\n; Archive created\n;\n"
        "3; 2606 16 CONSTRAINT public rental rental_pkey pagila\n"
        "4; 2606 17 FK CONSTRAINT public rental rental_inventory_id_fkey pagila\n"
        "5; 1259 18 INDEX public idx_fk_inventory_id pagila\n"
    )
    out = schema.without_foreign_keys(toc)
    assert "rental_pkey" in out and "idx_fk_inventory_id" in out
    assert "FK CONSTRAINT" not in out and not out.startswith(";")


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
        pending = fkeys.add(conn, keys)
        # the partitioned table's key is added checked; the others wait for validation
        assert {fk.table for fk in pending} == {"child"}
        assert fkeys.add(conn, keys) == pending  # a second call adds nothing twice
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
        pending = fkeys.add(conn, keys)
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="child_parent_fk"):
        fkeys.validate(s, pending, 2, "pagila-test")
