"""The Airflow design, as a plain script: the baseline this project replaced (method "airflow").

1. the whole schema first (pg_dump --schema-only of ``public``, restored pre-data + post-data:
   tables, indexes, constraints, triggers), so every row copied later is checked against the
   foreign keys and indexed one at a time;
2. one table at a time, parents before children: ``COPY (SELECT * FROM t) TO STDOUT`` (text) into
   a ``SpooledTemporaryFile`` of 128 MB, then ``COPY t FROM STDIN`` into the target, one
   transaction per table;
3. every owned sequence set from ``max(column)``;
4. the materialized views the source has populated refreshed (as every other method does).

Connections come from ``BENCH_SOURCE_DSN`` / ``BENCH_TARGET_DSN`` (never the command line); the
client tools read their passwords from ``PGPASSFILE``. Prints one JSON line: tables, rows, bytes,
spilled bytes, seconds per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pgschema
import psycopg2
from pgschema import conninfo
from psycopg2 import sql

SPOOL_MAX_BYTES = 128 * 1024 * 1024

LEAF_TABLES = """
SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname
"""
FOREIGN_KEYS = """
SELECT conrelid, confrelid FROM pg_constraint
WHERE contype = 'f' AND connamespace = 'public'::regnamespace
"""
OWNED_SEQUENCES = """
SELECT s.relname, t.relname, a.attname
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE s.relnamespace = 'public'::regnamespace AND d.deptype IN ('a', 'i')
ORDER BY s.relname
"""


def fk_order(cur: psycopg2.extensions.cursor) -> list[str]:
    """Leaf tables, every table after the tables its foreign keys reference."""
    cur.execute(LEAF_TABLES)
    names = dict(cur.fetchall())
    cur.execute("SELECT inhparent, inhrelid FROM pg_inherits")
    leaves_of: dict[int, list[int]] = {}
    for parent, child in cur.fetchall():
        leaves_of.setdefault(parent, []).append(child)
    deps: dict[int, set[int]] = {oid: set() for oid in names}
    cur.execute(FOREIGN_KEYS)
    for child, parent in cur.fetchall():
        children = leaves_of.get(child, [child])
        parents = leaves_of.get(parent, [parent])
        for c in children:
            if c in deps:
                deps[c].update(p for p in parents if p in names and p != c)
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(names):
        ready = sorted((o for o in names if o not in done and deps[o] <= done), key=names.get)
        if not ready:
            raise SystemExit(
                f"foreign key cycle among {sorted(names[o] for o in names if o not in done)}"
            )
        for o in ready:
            order.append(o)
            done.add(o)
    return [names[o] for o in order]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-dump", default="pg_dump")
    parser.add_argument("--pg-restore", default="pg_restore")
    args = parser.parse_args()
    src_dsn, tgt_dsn = os.environ["BENCH_SOURCE_DSN"], os.environ["BENCH_TARGET_DSN"]
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as tmp:
        dump = Path(tmp) / "schema.dump"
        pgschema.dump_schema(args.pg_dump, conninfo(src_dsn), dump, views=False)
        pgschema.restore(args.pg_restore, conninfo(tgt_dsn), dump, "--single-transaction")
    phases["schema"] = time.monotonic() - t0

    t1 = time.monotonic()
    src = psycopg2.connect(src_dsn)
    tgt = psycopg2.connect(tgt_dsn)
    rows = nbytes = spilled = 0
    with src.cursor() as cur:
        order = fk_order(cur)
    src.commit()
    for name in order:
        table = sql.Identifier("public", name)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
            with src.cursor() as cur:
                cur.copy_expert(
                    sql.SQL("COPY (SELECT * FROM ONLY {}) TO STDOUT").format(table).as_string(cur),
                    spool,
                )
            src.commit()
            size = spool.tell()
            nbytes += size
            if getattr(spool, "_rolled", False):
                spilled += size
            spool.seek(0)
            with tgt.cursor() as cur:
                cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(table).as_string(cur), spool)
                rows += cur.rowcount
            tgt.commit()
    phases["copies"] = time.monotonic() - t1

    t2 = time.monotonic()
    with src.cursor() as cur:
        cur.execute(OWNED_SEQUENCES)
        owned = cur.fetchall()
    src.commit()
    with tgt.cursor() as cur:
        for seq, table, column in owned:
            cur.execute(
                sql.SQL(
                    "SELECT pg_catalog.setval({seq}, coalesce(max({col}), 1),"
                    " max({col}) IS NOT NULL) FROM {table}"
                ).format(
                    seq=sql.Literal(f"public.{seq}"),
                    col=sql.Identifier(column),
                    table=sql.Identifier("public", table),
                )
            )
    tgt.commit()
    phases["sequences"] = time.monotonic() - t2

    t3 = time.monotonic()
    with src.cursor() as cur:
        cur.execute(pgschema.POPULATED_VIEWS)
        views = [sql.Identifier(*r) for r in cur.fetchall()]
    src.commit()
    with tgt.cursor() as cur:
        for view in views:
            cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(view))
    tgt.commit()
    phases["matviews"] = time.monotonic() - t3
    src.close()
    tgt.close()
    print(
        json.dumps(
            {
                "tables": len(order),
                "rows": rows,
                "bytes": nbytes,
                "spilled_bytes": spilled,
                "phases": {k: round(v, 3) for k, v in phases.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
