"""Tables without an integer key, above the split size, are copied by several units (heap block
ranges, ``ctid``) within the run's snapshot, each exactly once, even when a copy's message comes
back after its commit; verified like any table."""

from __future__ import annotations

import sys

import pytest

from pagila_tasks.run.plan import MAX_PARTS
from tests.support import assert_replica, query, scalar

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TABLES = """
CREATE TABLE public.notes (code text PRIMARY KEY, body text NOT NULL, n numeric);
INSERT INTO public.notes
    SELECT 'n-' || g, repeat(md5(g::text), 1 + g % 4), g / 7.0 FROM generate_series(1, 12000) g;
CREATE TABLE public.log_lines (at timestamptz, line text);  -- no key at all, duplicate rows
INSERT INTO public.log_lines
    SELECT '2022-01-01'::timestamptz + (g % 500) * interval '1 hour', 'line ' || (g % 300)
    FROM generate_series(1, 15000) g;
ANALYZE public.notes, public.log_lines;
"""


def test_tables_without_an_integer_key_split_by_blocks_and_copy_each_range_once(
    servers, isolated, tmp_path
) -> None:
    marker = tmp_path / "crashed"
    iso = isolated(
        {
            "PAGILA_SPLIT_ROWS": "3000",
            "PAGILA_TEST_FAULT": "crash-after-block-commit",
            "PAGILA_TEST_MARKER": str(marker),
        }
    )
    iso.pool(2, prefix="b", argv=[sys.executable, "-m", "tests.fault_worker"])
    assert iso.submit("load").returncode == 0
    query(servers.source_dsn, TABLES)
    code, out = iso.submit_json("replicate", "--full")
    assert code == 0, out
    assert marker.exists(), "no block range was copied (the fault never fired)"
    logs = "".join(pool.log_tail(2000) for pool in iso.pools)
    assert "committed by an earlier delivery; not copied again" in logs, logs[-3000:]
    units = out["units"]
    for table, parts in (("public.notes", 4), ("public.log_lines", 5)):
        names = sorted(n for n in units if n.startswith(f"{table}#"))
        assert names == [f"{table}#{i}of{parts}" for i in range(1, parts + 1)], sorted(units)
        assert all(units[n]["state"] == "done" for n in names)
    checks = {c["table"]: c for c in out["verification"]}
    for table, rows in (("public.notes", 12000), ("public.log_lines", 15000)):
        assert checks[table]["ok"] and checks[table]["target_rows"] == rows, checks[table]
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.log_lines") == 15000
    assert_replica(servers.source_dsn, servers.target_dsn)


WIDE = """
CREATE TABLE public.wide_notes (code text PRIMARY KEY, body text NOT NULL);
INSERT INTO public.wide_notes  -- ~1.6 KB a row, inline, hex that pglz cannot shrink
    SELECT 'w-' || g, (SELECT string_agg(md5(g::text || k), '') FROM generate_series(1, 50) k)
    FROM generate_series(1, 3000) g;
CREATE TABLE public.attachments (name text, blob text);  -- no key; its bytes live in TOAST
INSERT INTO public.attachments
    SELECT 'a-' || g, (SELECT string_agg(md5(g::text || k), '') FROM generate_series(1, 400) k)
    FROM generate_series(1, 400) g;
ANALYZE public.wide_notes, public.attachments;
"""
SIZES = """
SELECT pg_table_size(c.oid), pg_relation_size(c.oid) / 8192 FROM pg_class c
WHERE c.oid = %s::regclass
"""


def test_a_table_of_few_wide_rows_splits_by_its_stored_bytes(servers, isolated) -> None:
    """With the row rule off, the byte rule (heap and TOAST, ``PAGILA_SPLIT_BYTES``) splits a
    table of a few thousand wide rows, and one whose values live in TOAST, into block ranges;
    both verified, the replica equal to the source."""
    mb = 1 << 20
    iso = isolated({"PAGILA_SPLIT_ROWS": "0", "PAGILA_SPLIT_BYTES": str(mb)})
    iso.pool(2, prefix="w")
    assert iso.submit("load").returncode == 0
    query(servers.source_dsn, WIDE)
    expected = {}
    for table in ("public.wide_notes", "public.attachments"):
        rows = query(servers.source_dsn, SIZES, (table,))
        stored, blocks = rows[0]
        expected[table] = min(MAX_PARTS, -(-stored // mb), blocks)
        assert expected[table] > 1, (table, stored, blocks)
    code, out = iso.submit_json("replicate", "--full")
    assert code == 0, out
    units = out["units"]
    for table, parts in expected.items():
        names = sorted(n for n in units if n.startswith(f"{table}#"))
        assert names == sorted(f"{table}#{i}of{parts}" for i in range(1, parts + 1)), units
        assert all(units[n]["state"] == "done" for n in names)
    checks = {c["table"]: c for c in out["verification"]}
    assert checks["public.wide_notes"]["ok"] and checks["public.wide_notes"]["target_rows"] == 3000
    assert checks["public.attachments"]["ok"] and checks["public.attachments"]["target_rows"] == 400
    assert_replica(servers.source_dsn, servers.target_dsn)
