"""Foreign keys added NOT VALID then validated side by side: same end state, same refusals."""

from __future__ import annotations

import time

import psycopg2
import pytest
from psycopg2 import sql

from pagila_tasks import config
from pagila_tasks.pg.db import CATALOG_PATH, connection
from pagila_tasks.replication import fkeys
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


REFUSED = """
CREATE TABLE public.unkeyed (id int);  -- no unique index: a key to it is refused
CREATE TABLE public.keyed (id int PRIMARY KEY);
INSERT INTO public.unkeyed SELECT generate_series(1, 5);
INSERT INTO public.keyed SELECT generate_series(1, 5);
CREATE TABLE public.leaf (id int PRIMARY KEY, unkeyed_id int, keyed_id int, stray_id int);
INSERT INTO public.leaf VALUES (1, 1, 1, 1), (2, 2, 2, 99);  -- 99: no such keyed row
"""


def test_an_early_key_the_server_refuses_is_left_to_the_callback(servers, isolated) -> None:
    """Keys added beside the copies (:func:`earlykeys.add`, NOT VALID then validated): one
    whose referenced columns have no unique index yet and one that exists already are rolled
    back alone; one that rows break stays NOT VALID; each is logged and left to the callback
    (which adds what is missing and validates what is not, or fails the run naming it); the
    keys around them are added and validated on the same connection."""
    from pagila_tasks.replication import earlykeys
    from pagila_tasks.run.context import Context

    isolated({})  # this test's own Redis database, for the run's lock
    ctx = Context(config.from_env())
    run_id = "replicate-earlykeys-1"
    ctx.lock.acquire(run_id, "replicate")
    query(servers.target_dsn, REFUSED)
    add = "ALTER TABLE public.leaf ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES public.{}(id)"

    def key(name: str, column: str, parent: str) -> earlykeys.EarlyKey:
        statement = add.format(name, column, parent)
        return earlykeys.EarlyKey("public.leaf", f"public.{parent}", name, statement)

    keys = [
        key("to_unkeyed", "unkeyed_id", "unkeyed"),  # 42830: no unique index on unkeyed(id)
        key("to_keyed", "keyed_id", "keyed"),
        key("stray", "stray_id", "keyed"),  # 23503: the row with 99
        key("to_keyed", "keyed_id", "keyed"),  # 42710: added just before
    ]
    try:
        todo = [(earlykeys.ADD, k) for k in keys]
        assert earlykeys.add(ctx, run_id, todo) == (["public.leaf.to_keyed"], [])
    finally:
        ctx.lock.release(run_id)
    on_leaf = [r for r in query(servers.target_dsn, DEFINITIONS) if r[0] == "leaf"]
    assert on_leaf == [
        ("leaf", "stray", False, "FOREIGN KEY (stray_id) REFERENCES keyed(id) NOT VALID"),
        ("leaf", "to_keyed", True, "FOREIGN KEY (keyed_id) REFERENCES keyed(id)"),
    ]


def test_an_early_key_whose_locks_are_busy_is_left_for_later(servers, isolated) -> None:
    """A key step that cannot have its locks within LOCK_WAIT_MS (another session validates
    one of its tables) is handed back with the step it waits at, tried once more, and kept in
    the run record for the next table's build; taken from there, it goes on from that step."""
    from pagila_tasks.replication import earlykeys
    from pagila_tasks.run.context import Context

    isolated({})
    ctx = Context(config.from_env())
    run_id = "replicate-earlykeys-2"
    ctx.lock.acquire(run_id, "replicate")
    query(servers.target_dsn, REFUSED)
    statement = "ALTER TABLE public.leaf ADD CONSTRAINT {} FOREIGN KEY (keyed_id) " + (
        "REFERENCES public.keyed(id)"
    )
    first = earlykeys.EarlyKey("public.leaf", "public.keyed", "first", statement.format("first"))
    second = earlykeys.EarlyKey("public.leaf", "public.keyed", "second", statement.format("second"))
    query(servers.target_dsn, earlykeys.not_valid(second)[0])  # added, not yet validated
    blocker = psycopg2.connect(servers.target_dsn)
    try:
        with blocker.cursor() as cur:  # what a validation of leaf's own keys holds
            cur.execute("LOCK TABLE public.leaf IN SHARE UPDATE EXCLUSIVE MODE")
        todo = [(earlykeys.ADD, first), (earlykeys.VALIDATE, second)]
        started = time.monotonic()
        added, busy = earlykeys.add(ctx, run_id, todo)
        waited = time.monotonic() - started
        assert (added, busy) == ([], todo)
        assert waited >= 4 * earlykeys.LOCK_WAIT_MS / 1000  # each tried twice, then handed back
        as_before = [r[:3] for r in query(servers.target_dsn, DEFINITIONS) if r[0] == "leaf"]
        assert as_before == [("leaf", "second", False)]  # the busy steps changed nothing
        ctx.record.defer_keys(run_id, [[stage, *k.as_list()] for stage, k in busy])
        blocker.rollback()
        taken = ctx.record.take_deferred_keys(run_id)
        assert taken == [[stage, *k.as_list()] for stage, k in todo]
        assert ctx.record.take_deferred_keys(run_id) == []  # taken once
        again = [(stage, earlykeys.EarlyKey(*key)) for stage, *key in taken]
        both = ["public.leaf.first", "public.leaf.second"]
        assert earlykeys.add(ctx, run_id, again) == (both, [])
    finally:
        blocker.close()
        ctx.lock.release(run_id)
    on_leaf = [r[:3] for r in query(servers.target_dsn, DEFINITIONS) if r[0] == "leaf"]
    assert on_leaf == [("leaf", "first", True), ("leaf", "second", True)]


FEW_AND_MANY = """
CREATE TABLE public.many (id int);
CREATE TABLE public.few (id int, many_id int);
INSERT INTO public.many SELECT generate_series(1, 20000);
INSERT INTO public.few SELECT g, g * 7 FROM generate_series(1, 500) g;
INSERT INTO public.few VALUES (0, 20001);  -- dangling: the check must find it
ALTER TABLE public.many ADD PRIMARY KEY (id);  -- counts the rows (reltuples), as a build does
ALTER TABLE public.few ADD PRIMARY KEY (id);
ALTER TABLE public.few ADD CONSTRAINT few_many_fk FOREIGN KEY (many_id)
    REFERENCES public.many (id) NOT VALID;
ALTER TABLE public.many ADD CONSTRAINT many_few_fk FOREIGN KEY (id)
    REFERENCES public.few (id) NOT VALID;
"""

CHECK = """EXPLAIN SELECT fk.many_id FROM ONLY public.few fk LEFT OUTER JOIN ONLY public.many pk
ON (pk.id OPERATOR(pg_catalog.=) fk.many_id) WHERE pk.id IS NULL AND fk.many_id IS NOT NULL"""
"""The query PostgreSQL runs to check ``few_many_fk`` (as ``RI_Initial_Check`` writes it)."""


def test_a_key_to_a_much_larger_table_is_checked_through_its_index(servers) -> None:
    """A key whose referenced table holds many times its own rows (and fits in the server's
    cache) is checked by probing that table's unique index (not by hashing all of it), in the
    check's transaction only; a key the other way round, or to a table larger than the cache,
    keeps the server's plan; either way a dangling row is refused."""
    s = config.from_env()
    query(servers.target_dsn, FEW_AND_MANY)
    few, many = sql.Identifier("public", "few"), sql.Identifier("public", "many")
    with connection(s.target_dsn, s, "pagila-test") as conn, conn.cursor() as cur:
        assert fkeys.check_plan(cur, few, "few_many_fk")
        cur.execute("SHOW enable_hashjoin")
        assert cur.fetchone()[0] == "off"
        cur.execute(CHECK)
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "Nested Loop Anti Join" in plan and "many_pkey" in plan and "Hash" not in plan
        conn.rollback()
        cur.execute("SHOW enable_hashjoin")
        assert cur.fetchone()[0] == "on"  # SET LOCAL: gone with the transaction
        assert not fkeys.check_plan(cur, many, "many_few_fk")
        assert not fkeys.check_plan(cur, few, "no_such_key")
        cur.execute("SET LOCAL effective_cache_size = '8kB'")  # a server with little memory
        assert not fkeys.check_plan(cur, few, "few_many_fk")  # probes could read from disk
        conn.rollback()
    key = fkeys.ForeignKey("public", "few", "few_many_fk", "")
    with pytest.raises(psycopg2.errors.ForeignKeyViolation, match="few_many_fk"):
        fkeys.validate(s, [key], 1, "pagila-test")
    query(servers.target_dsn, "DELETE FROM public.few WHERE id = 0")
    fkeys.validate(s, [key], 1, "pagila-test")
    valid = {r[1]: r[2] for r in query(servers.target_dsn, DEFINITIONS)}
    assert valid == {"few_many_fk": True, "many_few_fk": False}
