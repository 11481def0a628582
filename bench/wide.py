"""The wide dataset (``--wide-gb X``): Pagila at a small scale plus ``public.wide_rows``, about
X GB of rows of ~1.7 KB made by bench/wide.sql.

Pagila's rows are narrow and its large tables have integer keys; this one table is the other
shape: few, wide rows per page and a text key, so this project splits it by heap block ranges
(``ctid``), and a method's cost per GB is measured where the bytes, not the rows, dominate.
"""

from __future__ import annotations

import math
import subprocess
import time
from typing import Any

from bench import BENCH, MB, data, say
from bench.stack import BenchStack
from pagila_tasks import config
from pagila_tasks.run import plan

GB = 1024 * MB
TABLE = "public.wide_rows"
ROW_BYTES = 2131
"""On-disk bytes of one row of wide.sql: 2048 of heap (four rows a page) and 83 of its primary
key and ``created_at`` index (measured at 40,000 rows): how many rows make X GB."""
BATCH_ROWS = 200_000
"""Rows per INSERT of wide.sql: a few statements for a few GB."""
WIDE_SIZE = """
SELECT pg_total_relation_size('public.wide_rows'),
       pg_relation_size('public.wide_rows') / current_setting('block_size')::int,
       pg_table_size('public.wide_rows')
"""


def name(gb: float) -> str:
    """The dataset's name in the tables, e.g. ``wide-2GB``."""
    return f"wide-{gb:g}GB"


def make(b: BenchStack, n: int, gb: float) -> dict[str, Any]:
    """The source made Pagila x``n`` (:func:`bench.data.scale`) plus about ``gb`` GB of
    ``public.wide_rows``, its counts kept (the table's among them, so every run is verified on
    it); what :func:`bench.data.scale` says, for the whole dataset, plus the wide table's part.
    """
    started = time.monotonic()
    info = data.scale(b, n)
    rows = max(1, math.ceil(gb * GB / ROW_BYTES))
    say(f"adding {TABLE}: {rows} rows of about 1.7 KB, about {gb:g} GB (bench/wide.sql)")
    wide_started = time.monotonic()
    _wide_sql(b, rows)
    b.admin("source", "CHECKPOINT")  # no method pays for the table's writes
    b.counts = data.table_counts(b, "source")
    with b.cursor("source") as cur:
        cur.execute(data.TOTAL_SIZE)
        size = int(cur.fetchone()[0])
        cur.execute(WIDE_SIZE)
        wide_bytes, blocks, stored = (int(x) for x in cur.fetchone())
    info |= {
        "name": name(gb),
        "bytes": size,
        "rows": sum(b.counts.values()),
        "seconds": round(time.monotonic() - started, 1),
        "wide_rows": b.counts["wide_rows"],
        "wide_bytes": wide_bytes,
        "wide_seconds": round(time.monotonic() - wide_started, 1),
    }
    s = config.from_env(b.env)
    units = _units(b.counts["wide_rows"], stored, blocks, s)
    say(
        f"  {info['name']}: {size / MB:.0f} MB on disk (tables + indexes), {info['rows']} rows; "
        f"{TABLE} {wide_bytes / MB:.0f} MB, {info['wide_rows']} rows, {blocks} blocks, made in "
        f"{info['wide_seconds']} s ({info['seconds']} s in all); ours splits it into {units} "
        f"block ranges at PAGILA_SPLIT_ROWS={s.split_rows}, PAGILA_SPLIT_BYTES={s.split_bytes}"
        + ("" if units > 1 else " (one unit: it is not split; give more GB or --split-rows)")
    )
    return info


def _wide_sql(b: BenchStack, rows: int) -> None:
    """bench/wide.sql on the source with psql, as the project's role (it owns the table)."""
    proc = subprocess.run(
        [
            b.tools["psql"],
            *("-X", "-q", "-v", "ON_ERROR_STOP=1"),
            *("-v", f"rows={rows}", "-v", f"batch={BATCH_ROWS}"),
            *("-f", str(BENCH / "wide.sql"), "-d", b.conninfo("source")),
        ],
        env=b.env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"wide.sql failed: {proc.stderr.strip()}")


def _units(rows: int, stored: int, blocks: int, s: config.Settings) -> int:
    """How many units this project's plan makes of the table (``plan.plan_units``, block
    ranges since it has no integer key)."""
    heap = blocks * 8192
    table = plan.Table(
        "public", "wide_rows", rows, heap, ("id",), blocks=blocks, stored_bytes=stored
    )
    return len(plan.plan_units([table], s.split_rows, by_block=True, split_bytes=s.split_bytes))
