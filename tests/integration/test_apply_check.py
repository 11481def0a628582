"""The apply's check that nobody wrote a changed table since the proof, read on a connection of
its own beside the apply's writes, on a real server: the apply's own uncommitted rows are not
someone else's write, a committed write by anyone else is, and when that connection cannot be
had every table is measured whole instead (more reading, never a table taken unproven)."""

from __future__ import annotations

import dataclasses
import logging

from pagila_tasks import config
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import changes
from pagila_tasks.run.changeplan import Change
from tests.support import query, scalar

TABLES = """
CREATE TABLE public.quiet (id int PRIMARY KEY, v int);
CREATE TABLE public.busy (id int PRIMARY KEY, v int);
INSERT INTO public.quiet SELECT g, g FROM generate_series(1, 5000) g;
INSERT INTO public.busy SELECT g, g FROM generate_series(1, 5000) g;
"""


def _change(table: str) -> Change:
    return Change("public", table, table, ("id",), ("integer",), ("id", "v"), ("v",))


def test_only_a_write_by_someone_else_since_the_proof_counts(servers, caplog) -> None:
    """Measured (the proof's snapshot), then the apply's transaction locks both tables and
    writes to both; meanwhile someone else's update of ``busy`` had committed before the lock.
    The check, on its own connection, shows ``quiet`` unwritten (the apply's rows are not yet
    anyone's) and not ``busy``; with the target out of reach it shows none."""
    s = config.from_env()
    query(servers.target_dsn, TABLES)
    measured_at = int(scalar(servers.target_dsn, "SELECT pg_snapshot_xmin(pg_current_snapshot())"))
    proven = {f"public.{t}": (5000, 5000, None, None) for t in ("quiet", "busy")}
    found = [_change("quiet"), _change("busy")]
    query(servers.target_dsn, "UPDATE public.busy SET v = -v WHERE id = 4000")  # someone else
    with connection(s.target_dsn, s, "pagila-test-apply") as conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE public.quiet, public.busy IN SHARE ROW EXCLUSIVE MODE")
        cur.execute("UPDATE public.quiet SET v = v + 1 WHERE id % 10 = 0")  # the apply's own
        cur.execute("INSERT INTO public.busy VALUES (9001, 1)")
        shown = changes._unwritten_since(s, "run-test", found, proven, measured_at)
        assert shown == {"public.quiet"}
        unreachable = dataclasses.replace(
            s, target_dsn="postgresql://nobody@127.0.0.1:9/none", connect_timeout=1
        )
        with caplog.at_level(logging.WARNING, logger=changes.__name__):
            assert (
                changes._unwritten_since(unreachable, "run-test", found, proven, measured_at)
                == set()
            )
        assert "every changed table measured whole" in caplog.text
        conn.rollback()


def test_without_a_proof_snapshot_nothing_is_shown(servers) -> None:
    """No target snapshot recorded by the proof: no table can be shown unwritten since."""
    s = config.from_env()
    query(servers.target_dsn, TABLES)
    proven = {"public.quiet": (5000, 5000, None, None)}
    assert changes._unwritten_since(s, "run-test", [_change("quiet")], proven, None) == set()
