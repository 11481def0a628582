"""A floor estimate (methods "floor-text" / "floor-binary"): the least work a table-by-table copy
between two servers can do, with no Python in the data path.

1. pre-data (pg_dump of ``public``'s pre-data and post-data sections, restored
   ``--section=pre-data``);
2. every leaf table piped ``psql -c 'COPY t TO STDOUT' | psql -c 'COPY t FROM STDIN'``, two
   pipes at a time, largest table first (``--format text`` or ``binary``);
3. sequences set to the source's values;
4. post-data ``pg_restore -j 2`` (indexes, constraints, triggers, and, last, the refresh of
   each materialized view the source has populated, as a whole dump's restore does: every
   method builds the same database).

No snapshot is shared (the source is idle during the benchmark). Connections come from
``BENCH_SOURCE_DSN`` / ``BENCH_TARGET_DSN``; the client tools read passwords from ``PGPASSFILE``.
Prints one JSON line with the seconds of each phase.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pgschema
import psycopg2
from pgschema import conninfo
from psycopg2 import sql

TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY pg_relation_size(c.oid) DESC, c.relname
"""
SEQUENCES = """
SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'
"""


def psql_argv(psql: str, conninfo: str, command: str) -> list[str]:
    """psql running one ``command`` (no ~/.psqlrc, quiet, stopping at the first error)."""
    return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", command]


def pipe_table(psql: str, src: str, tgt: str, name: str, fmt: str) -> None:
    """One table through a pipe between two psql processes."""
    ident = '"public".' + '"' + name.replace('"', '""') + '"'
    out = subprocess.Popen(
        psql_argv(psql, src, f"COPY {ident} TO STDOUT (FORMAT {fmt})"), stdout=subprocess.PIPE
    )
    into = subprocess.run(
        psql_argv(psql, tgt, f"COPY {ident} FROM STDIN (FORMAT {fmt})"),
        stdin=out.stdout,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    assert out.stdout is not None
    out.stdout.close()
    if out.wait() != 0 or into.returncode != 0:
        raise SystemExit(f"copy of {name} failed ({out.returncode}, {into.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("text", "binary"), default="text")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pg-dump", default="pg_dump")
    parser.add_argument("--pg-restore", default="pg_restore")
    parser.add_argument("--psql", default="psql")
    args = parser.parse_args()
    src_dsn, tgt_dsn = os.environ["BENCH_SOURCE_DSN"], os.environ["BENCH_TARGET_DSN"]
    src_ci, tgt_ci = conninfo(src_dsn), conninfo(tgt_dsn)
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        dump = Path(tmp) / "schema.dump"
        t = time.monotonic()
        pgschema.dump_schema(args.pg_dump, src_ci, dump)
        pgschema.restore(
            args.pg_restore, tgt_ci, dump, "--section=pre-data", "--single-transaction"
        )
        phases["pre-data"] = time.monotonic() - t

        t = time.monotonic()
        with psycopg2.connect(src_dsn) as conn, conn.cursor() as cur:
            cur.execute(TABLES)
            tables = [r[0] for r in cur.fetchall()]
            cur.execute(SEQUENCES)
            seqs = cur.fetchall()
        conn.close()
        with ThreadPoolExecutor(args.jobs) as pool:
            for f in [
                pool.submit(pipe_table, args.psql, src_ci, tgt_ci, name, args.format)
                for name in tables
            ]:
                f.result()
        phases["copies"] = time.monotonic() - t

        t = time.monotonic()
        with psycopg2.connect(tgt_dsn) as conn, conn.cursor() as cur:
            for schema, name, value in seqs:
                cur.execute(
                    "SELECT pg_catalog.setval(%s, %s, %s)",
                    (sql.Identifier(schema, name).as_string(cur), value or 1, value is not None),
                )
        conn.close()
        phases["sequences"] = time.monotonic() - t

        t = time.monotonic()
        pgschema.restore(
            args.pg_restore, tgt_ci, dump, "--section=post-data", f"--jobs={args.jobs}"
        )
        phases["post-data"] = time.monotonic() - t
    print(
        json.dumps({"tables": len(tables), "phases": {k: round(v, 3) for k, v in phases.items()}})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
