"""The copy phase alone: the project's spooled copy against a streamed pipe, same units.

Why: the issue asks whether streaming each unit (source COPY and target COPY at once, through
an OS pipe) beats the spooled contract (read the unit into a capped SpooledTemporaryFile, then
write it). Both run the project's plan (``plan.plan_units``: the same key-range splits), two
units at a time in two processes (as two workers would), into the target's pre-data schema,
alternating rounds. Run against a stack that holds the dataset (``pagila-stack env`` or the
benchmark's ``--keep`` state):

    python bench/spool_vs_stream.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from pagila_tasks import config
from pagila_tasks.pg import warm
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import catalog, schema
from pagila_tasks.replication.copy import copy_table, statements
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import plan


def stream_unit(s: config.Settings, unit: plan.Unit, snapshot_id: str) -> int:
    """Copy ``unit`` with the source COPY writing into a pipe the target COPY reads at once."""
    st = statements(unit, s.copy_format)
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out, snapshot_cursor(s, snapshot_id, "x") as cur:
                cur.copy_expert(st.copy_out, out, size=1 << 20)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_fd, "rb") as src, warm.borrow(s.target_dsn, s, "x") as tgt:
        with tgt.cursor() as cur:
            cur.execute(st.empty)
            cur.copy_expert(st.copy_in, src, size=1 << 20)
            rows = cur.rowcount
        tgt.commit()
    producer.join()
    if errors:
        raise errors[0]
    return rows


def _one(mode: str, unit_args: dict, snapshot_id: str) -> int:
    s = config.from_env()
    unit = plan.Unit.from_args(unit_args)
    if mode == "stream":
        return stream_unit(s, unit, snapshot_id)
    return copy_table(s, unit, snapshot_id, lambda: None).rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    s = config.from_env()
    with connection(s.source_dsn, s, "bench-snapshot") as holder:
        holder.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = holder.cursor()
        cur.execute("SELECT pg_export_snapshot()")
        snapshot_id = cur.fetchone()[0]
        version = holder.server_version
        tables = catalog.tables(cur, s.schemas)
        spans = {
            t.qualified: catalog.key_span(cur, t)
            for t in plan.tables_to_split(tables, s.split_rows, s.split_bytes)
        }
        known = {k: v for k, v in spans.items() if v}
        units = plan.plan_units(tables, s.split_rows, known, split_bytes=s.split_bytes)
        archive = schema.dump(s, snapshot_id, version)
        times: dict[str, list[float]] = {"spool": [], "stream": []}
        for r in range(args.rounds):
            for mode in ("spool", "stream") if r % 2 == 0 else ("stream", "spool"):
                with connection(s.target_dsn, s, "bench-reset") as tgt:
                    schema.reset_target(tgt, s.schemas)
                schema.restore(s, archive, "pre-data", 1, version)
                started = time.monotonic()
                with ProcessPoolExecutor(max_workers=2) as pool:
                    rows = sum(
                        pool.map(
                            _one,
                            [mode] * len(units),
                            [u.as_args() for u in units],
                            [snapshot_id] * len(units),
                        )
                    )
                times[mode].append(time.monotonic() - started)
                print(f"round {r + 1} {mode:6s} {times[mode][-1]:6.2f} s  {rows} rows")
    print("\n| copy phase | median s | runs (s) |\n| --- | --- | --- |")
    for mode, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {mode} | {statistics.median(values):.2f} | {runs} |")


if __name__ == "__main__":
    main()
