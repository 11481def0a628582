"""Verification on a real server: equal content gives equal checksums, any change does not."""

from __future__ import annotations

import threading
import time

import psycopg2
import psycopg2.extensions

from pagila_tasks.replication import verify
from tests.support import query


def test_checksums_see_content_not_order(servers) -> None:
    """Same rows in another order match; one changed value or type fallback is told apart."""
    dsn = servers.source_dsn
    query(dsn, "CREATE TABLE public.a (id int, v text, ts tsvector)")
    query(dsn, "CREATE TABLE public.b (id int, v text, ts tsvector)")
    query(dsn, "CREATE TABLE public.c (id int, v text)")
    query(dsn, "CREATE TABLE public.d (id int, v text)")
    query(dsn, "INSERT INTO public.a SELECT g, 'x' || g, 'a b' FROM generate_series(1, 500) g")
    query(dsn, "INSERT INTO public.b SELECT g, 'x' || g, 'a b' FROM generate_series(500, 1, -1) g")
    query(dsn, "INSERT INTO public.c SELECT g, 'x' || g FROM generate_series(1, 500) g")
    query(dsn, "INSERT INTO public.d SELECT g, 'x' || g FROM generate_series(500, 1, -1) g")
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        m = verify.measure_all(cur, [("public", t) for t in "abcd"], checksums=True)
        assert m["public.a"] == m["public.b"] and m["public.a"][1].startswith("t:")  # tsvector
        assert m["public.c"] == m["public.d"] and m["public.c"][1].startswith("h:")
        cur.execute("UPDATE public.d SET v = 'changed' WHERE id = 250")
        cur.execute("UPDATE public.b SET ts = 'a c' WHERE id = 250")
        changed = verify.measure_all(cur, [("public", "b"), ("public", "d")], checksums=True)
        checks = verify.combine(
            {"public.a": m["public.a"], "public.c": m["public.c"]},
            {"public.a": changed["public.b"], "public.c": changed["public.d"]},
        )
        assert [c.ok for c in checks] == [False, False]
        assert all(c.source_rows == c.target_rows == 500 for c in checks)
        assert verify.measure(cur, "public", "c", checksums=False) == (500, None)
    finally:
        conn.close()


def test_a_recorded_measure_is_taken_only_for_a_table_unwritten_since(servers) -> None:
    """Measures recorded in a snapshot are taken for a table nobody wrote since (and only that
    one): an update (new xmin), a delete (one row fewer) or a delete plus an insert (same count,
    a new xmin) each make the table measured again, and the fresh measure tells it apart."""
    dsn = servers.source_dsn
    tables = _made(dsn, dict.fromkeys("efgh", 300))
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        xmin, then = _measured_now(cur, tables)
        conn.commit()
        query(dsn, "UPDATE public.f SET v = 'changed' WHERE id = 7")
        query(dsn, "DELETE FROM public.g WHERE id = 8")
        query(dsn, "DELETE FROM public.h WHERE id = 9; INSERT INTO public.h VALUES (301, 'x9')")
        known = {f"public.{t}": (then[f"public.{t}"], xmin) for t in "efgh"}
        now, taken = verify.measure_known(cur, tables, known)
        assert taken == {"public.e"}
        assert now == verify.measure_all(cur, tables, checksums=True)
        assert [now[f"public.{t}"] == then[f"public.{t}"] for t in "efgh"] == [
            True,
            False,
            False,
            False,
        ]
        assert now["public.h"][0] == 300  # the same count: only the xmin showed it
    finally:
        conn.close()


def test_a_write_is_found_in_the_first_block_range_that_holds_it(servers) -> None:
    """A table is read in block ranges from its end, and the first range holding a row written
    since ends the read: an insert (at the end) in the first range, an update kept in its page
    (HOT) a few ranges down after only those, one on the first page after every range; a
    table nobody wrote is read in every range, once, and taken."""
    dsn = servers.source_dsn
    for t in "ijkl":
        query(dsn, f"CREATE TABLE public.{t} (id int PRIMARY KEY, v text) WITH (fillfactor = 50)")
        query(dsn, f"INSERT INTO public.{t} SELECT g, 'x' || g FROM generate_series(1, 20000) g")
    tables = [("public", t) for t in "ijkl"]
    conn = psycopg2.connect(dsn, cursor_factory=_Recording)
    try:
        cur = conn.cursor()
        xmin, _ = _measured_now(cur, tables)
        conn.commit()
        pages = query(dsn, "SELECT pg_relation_size('public.j') / 8192")[0][0]
        ranges = verify.block_ranges(pages)
        assert len(ranges) >= 3  # the first page is far from the tail
        query(dsn, "INSERT INTO public.i VALUES (20001, 'new')")
        query(dsn, "UPDATE public.j SET v = 'changed' WHERE id = 1")
        assert query(dsn, "SELECT (ctid::text::point)[0] FROM public.j WHERE id = 1") == [(0,)]
        middle = ranges[1][0]  # a page of the second range from the end
        query(dsn, f"UPDATE public.l SET v = 'changed' WHERE ctid = '({middle},1)'")
        assert query(dsn, "SELECT (ctid::text::point)[0] FROM public.l WHERE v = 'changed'") == [
            (middle,)
        ]
        limit = verify.age_limit(cur, xmin)
        assert limit is not None
        verdicts = {}
        for t in "ijkl":
            cur.executed.clear()
            verdicts[t] = verify.unwritten(cur, ("public", t), 20000, limit)
            verdicts[t + " ranges read"] = sum("FILTER" in q for q in cur.executed)
        assert verdicts == {
            "i": False,
            "i ranges read": 1,  # found in the last pages
            "j": False,
            "j ranges read": len(ranges),  # only the first page's range sees its update
            "k": True,
            "k ranges read": len(ranges),
            "l": False,
            "l ranges read": 2,
        }
    finally:
        conn.close()


def test_block_ranges_cover_a_table_once_from_its_end() -> None:
    """Pure: the ranges tile blocks 0..n exactly, the first one open to the table's end."""
    for blocks in (0, 1, 31, 32, 33, 100, 7500, 1 << 20):
        ranges = verify.block_ranges(blocks)
        assert ranges[0][1] is None and ranges[-1][0] == 0
        covered = set()
        top = max(blocks, ranges[0][0] + 1)
        for low, high in ranges:
            part = set(range(low, top if high is None else high))
            assert not covered & part
            covered |= part
        assert covered >= set(range(blocks))
        assert len(ranges) <= max(blocks // 32, 1).bit_length() + 1


class _Recording(psycopg2.extensions.cursor):
    """A cursor that keeps the text of every statement it ran."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.executed: list[str] = []

    def execute(self, query, vars=None):
        self.executed.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, vars)


def test_a_table_a_refresh_wrote_is_taken_until_another_transaction_writes_it(servers) -> None:
    """A refresh's record of the tables it wrote (:mod:`pagila_tasks.run.recorded`): measured
    after its writes, holding from a snapshot taken once it locked them, with its own xid as
    their writer. Its own rows do not count as written since; a transaction that was already
    running and waited on the lock to write, a later update and the writer's own write in a
    subtransaction each make the table measured again."""
    dsn = servers.source_dsn
    tables = _made(dsn, dict.fromkeys(["w1", "w2", "w3", "w4"], 300))
    query(dsn, "CREATE TABLE public.elsewhere (id int)")
    writer, waiting, reader = (psycopg2.connect(dsn) for _ in range(3))
    try:
        late = waiting.cursor()
        late.execute("INSERT INTO public.elsewhere VALUES (1)")  # running, with an xid
        cur = writer.cursor()
        cur.execute(
            "LOCK TABLE public.w1, public.w2, public.w3, public.w4 IN SHARE ROW EXCLUSIVE MODE"
        )
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        locked_from = cur.fetchone()[0]
        for t in ("w1", "w2", "w3"):
            cur.execute(f"UPDATE public.{t} SET v = 'refreshed' WHERE id = 5")
        cur.execute("SAVEPOINT s; UPDATE public.w4 SET v = 'refreshed' WHERE id = 5; RELEASE s")
        cur.execute("SELECT pg_current_xact_id()::text::bigint")
        xid = cur.fetchone()[0]
        then = verify.measure_all(cur, tables, checksums=True)
        blocked = threading.Thread(
            target=late.execute, args=("UPDATE public.w2 SET v = 'late' WHERE id = 6",)
        )
        blocked.start()  # waits on the lock until the refresh commits
        time.sleep(0.3)
        assert blocked.is_alive()
        writer.commit()
        blocked.join(timeout=30)
        waiting.commit()
        query(dsn, "UPDATE public.w3 SET v = 'later' WHERE id = 7")

        known = {
            f"public.{t}": (then[f"public.{t}"], locked_from) for t in ("w1", "w2", "w3", "w4")
        }
        writers = dict.fromkeys(known, xid)
        rcur = reader.cursor()
        now, taken = verify.measure_known(rcur, tables, known, writers=writers)
        assert taken == {"public.w1"}
        assert now == verify.measure_all(rcur, tables, checksums=True)
        assert now["public.w4"] == then["public.w4"]  # measured again, and equal
        assert now["public.w2"] != then["public.w2"] and now["public.w3"] != then["public.w3"]
        assert verify.measure_known(rcur, tables, known)[1] == set()  # no writer: all written
    finally:
        for conn in (writer, waiting, reader):
            conn.close()


def test_two_connections_in_one_snapshot_share_a_side_each_table_once(servers) -> None:
    """The proof's source side on two connections (:class:`verify.Shared`): every table is
    measured by exactly one of them, the largest first, and together they give what one
    connection gives: recorded measures taken where they hold, the rest measured."""
    dsn = servers.source_dsn
    sizes = {"p": 4000, "q": 10, "r": 2000, "s": 300}
    tables = _made(dsn, sizes)
    holder = psycopg2.connect(dsn)
    other = psycopg2.connect(dsn)
    try:
        cur = holder.cursor()
        xmin, then = _measured_now(cur, tables)
        holder.commit()
        query(dsn, "UPDATE public.r SET v = 'changed' WHERE id = 7")
        known = {f"public.{t}": (then[f"public.{t}"], xmin) for t in sizes}
        holder.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur.execute("SELECT pg_export_snapshot()")
        snap = cur.fetchone()[0]
        ocur = other.cursor()
        ocur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        ocur.execute("SET TRANSACTION SNAPSHOT %s", (snap,))
        order = verify.largest_first(cur, tables)
        assert order == [("public", "p"), ("public", "r"), ("public", "s"), ("public", "q")]
        todo = verify.Shared(order)
        first, first_taken = verify.measure_known(cur, tables, known, iter([next(todo)]))
        second, second_taken = verify.measure_known(ocur, tables, known, todo)
        assert set(first) == {"public.p"} and set(second) == {"public.r", "public.s", "public.q"}
        assert first_taken | second_taken == {"public.p", "public.s", "public.q"}
        alone, taken = verify.measure_known(cur, tables, known)
        assert {**first, **second} == alone and taken == first_taken | second_taken
        assert alone["public.r"] != then["public.r"]
    finally:
        holder.close()
        other.close()


def _made(dsn: str, sizes: dict[str, int]) -> list[tuple[str, str]]:
    """Tables ``public.<name>`` of ``sizes[name]`` rows each (id, v)."""
    for t, n in sizes.items():
        query(dsn, f"CREATE TABLE public.{t} (id int PRIMARY KEY, v text)")
        query(dsn, f"INSERT INTO public.{t} SELECT g, 'x' || g FROM generate_series(1, {n}) g")
    return [("public", t) for t in sizes]


def _measured_now(
    cur: psycopg2.extensions.cursor, tables: list[tuple[str, str]]
) -> tuple[int, verify.Measures]:
    """The xmin of ``cur``'s snapshot and every table measured in it: a record to hold."""
    cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    xmin = cur.fetchone()[0]
    return xmin, verify.measure_all(cur, tables, checksums=True)
