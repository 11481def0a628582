"""The spool-cap memory check (``--memory``): a worker's peak RSS stays under the cap + 100 MB.

One generated table larger than the cap is replicated alone on fresh workers; its unit must
spill to disk, and no worker process may peak above the limit.
"""

from __future__ import annotations

from typing import Any

from bench import MB, say
from bench.data import reset_target, table_counts, verify
from bench.ours import replicate
from bench.stack import BenchStack

TABLE = "public.bench_memory"
CREATE = "CREATE TABLE public.bench_memory (id integer PRIMARY KEY, payload text NOT NULL)"
FILL = """
INSERT INTO public.bench_memory SELECT i, repeat(md5(i::text), 31)
FROM generate_series(1, %s) AS i
"""
DROP = "DROP TABLE IF EXISTS public.bench_memory"
HEADROOM_MB = 100
"""What a worker may hold beside its spool: the interpreter, Celery, psycopg2, buffers."""


def memory_check(b: BenchStack, cap_mb: int, table_mb: int) -> dict[str, Any]:
    """Replicate the whole source with a ``cap_mb`` spool, then the generated table alone."""
    rows = table_mb * 1024  # ~1 KiB per row in COPY output
    say(f"memory check: {TABLE} ~{table_mb} MB ({rows} rows), spool cap {cap_mb} MB")
    with b.cursor("source") as cur:
        cur.execute(DROP)
        cur.execute(CREATE)
        cur.execute(FILL, (rows,))
        cur.execute(f"ANALYZE {TABLE}")
    b.counts = table_counts(b, "source")
    extra = {"PAGILA_SPOOL_MAX_BYTES": str(cap_mb * MB)}
    try:
        reset_target(b)
        b.restart_workers(extra)
        replicate(b, "memory check, full replicate")
        b.restart_workers(extra)
        run, record = replicate(b, "memory check", "--tables", "bench_memory")
        unit = record["units"].get(TABLE, {})
        verify(b, "ours (memory check)")
        worker_peak = max(v for k, v in run.peaks.items() if k == "celery worker")
        limit = (cap_mb + HEADROOM_MB) * MB
        result = {
            "cap_mb": cap_mb,
            "table_bytes": int(unit.get("bytes", 0)),
            "rows": int(unit.get("rows", 0)),
            "spilled": bool(unit.get("spilled")),
            "worker_peak_rss": worker_peak,
            "limit": limit,
            "peaks": run.peaks,
            "seconds": round(run.seconds, 2),
            "ok": bool(unit.get("spilled")) and worker_peak <= limit,
        }
    finally:
        with b.cursor("source") as cur:
            cur.execute(DROP)
        reset_target(b)
    say(
        f"  copied {result['table_bytes'] / MB:.0f} MB ({result['rows']} rows) in "
        f"{result['seconds']} s; spilled={result['spilled']}; largest worker process peak RSS "
        f"{worker_peak / MB:.0f} MB vs cap + 100 MB = {limit / MB:.0f} MB: "
        f"{'OK' if result['ok'] else 'OVER'}"
    )
    return result
