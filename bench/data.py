"""The dataset: Pagila loaded into the source, scaled, counted; the target emptied and checked.

Every run is verified by row counts against the source's (:attr:`BenchStack.counts`), so a
fast method that copies the wrong thing counts as failed, not fast.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from psycopg2 import sql

from bench import BENCH, MB, say
from bench.measuring import last_line
from bench.results import RunFailed
from bench.stack import BenchStack

TOTAL_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm')
"""
TABLES = """
SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
AND (c.relkind = 'r' OR c.relkind = 'm' AND c.relispopulated) ORDER BY 1
"""
"""The tables of ``public`` and its populated materialized views: a method that leaves a view
the source has populated empty has not made the same database (and skipped its refresh)."""


def load(b: BenchStack) -> None:
    """Pagila into the source, as a user would: ``pagila-submit load``."""
    say("loading Pagila into the source (pagila-submit load)")
    b.restart_workers()
    proc = subprocess.run(
        [*b.submit_argv(), "load", "--json"], env=b.env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"load failed: {last_line(proc.stdout)} {last_line(proc.stderr)}")


def scale(b: BenchStack, n: int) -> dict[str, Any]:
    """The source made Pagila x``n`` by bench/scale.sql; its counts kept; what it holds."""
    say(f"scaling the source to x{n} (bench/scale.sql)")
    started = time.monotonic()
    proc = subprocess.run(
        [
            b.tools["psql"],
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"scale={n}",
            "-f",
            str(BENCH / "scale.sql"),
            "-d",
            b.conninfo("source"),
        ],
        env=b.env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"scale.sql failed: {proc.stderr.strip()}")
    b.counts = table_counts(b, "source")
    with b.cursor("source") as cur:
        cur.execute(TOTAL_SIZE)
        size = int(cur.fetchone()[0])
    parts = {k: v for k, v in b.counts.items() if k.startswith("payment_p")}
    info = {
        "scale": n,
        "bytes": size,
        "rows": sum(b.counts.values()),
        "rental": b.counts.get("rental", 0),
        "inventory": b.counts.get("inventory", 0),
        "payment_parts": (min(parts.values()), max(parts.values())) if parts else (0, 0),
        "seconds": round(time.monotonic() - started, 1),
    }
    say(
        f"  x{n}: {size / MB:.0f} MB on disk (tables + indexes), {info['rows']} rows, "
        f"rental {info['rental']}, payment partitions {info['payment_parts'][0]}.."
        f"{info['payment_parts'][1]} rows ({info['seconds']} s)"
    )
    return info


def table_counts(b: BenchStack, which: str) -> dict[str, int]:
    """Rows of every table and populated materialized view of ``public`` on ``source`` or
    ``target``."""
    with b.cursor(which) as cur:
        cur.execute(TABLES)
        names = [r[0] for r in cur.fetchall()]
        out = {}
        for name in names:
            cur.execute(
                sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier("public", name))
            )
            out[name] = int(cur.fetchone()[0])
    return out


def reset_target(b: BenchStack, create_public: bool = True) -> None:
    """Drop public (and our pagila_support, and ours-kept's reporting), recreate public as the
    database owner.

    ``create_public=False`` for the methods restoring a pg_dump archive of ``-n public``:
    it holds its own ``CREATE SCHEMA public``. Both servers are checkpointed, so no run pays
    for the previous one's writes.
    """
    with b.cursor("target") as cur:
        cur.execute("DROP SCHEMA IF EXISTS public CASCADE")
        cur.execute("DROP SCHEMA IF EXISTS pagila_support CASCADE")
        cur.execute("DROP SCHEMA IF EXISTS reporting CASCADE")  # ours-kept's (bench/kept.py)
        if create_public:
            cur.execute("CREATE SCHEMA public")
    checkpoint(b)


def checkpoint(b: BenchStack) -> None:
    """Both servers checkpointed, so no run pays for earlier writes."""
    b.admin("target", "CHECKPOINT")
    b.admin("source", "CHECKPOINT")


def verify(b: BenchStack, method: str) -> None:
    """Fail the run when a target table's row count differs from the source's."""
    got = table_counts(b, "target")
    bad = {t: (n, got.get(t)) for t, n in b.counts.items() if got.get(t) != n}
    if bad:
        shown = ", ".join(f"{t} {s}!={g}" for t, (s, g) in sorted(bad.items())[:5])
        raise RunFailed(f"{method}: row counts differ from the source: {shown}")
