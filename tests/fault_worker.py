"""A real worker with one fault injected into the replication's callback (``PAGILA_TEST_FAULT``).

``python -m tests.fault_worker <celery worker args>``:

- ``corrupt-stage``: just before the callback measures the target, one row of the staging copy
  of ``public.actor`` is changed, so verification finds a checksum mismatch;
- ``hang-in-finish``: the callback stops for good before post-data, for a ``kill -9`` from
  outside;
- ``crash-after-post-data``: the first callback kills its own process right after post-data
  committed (the message comes back: late ack, reject on worker lost);
- ``fail-after-post-data``: every callback fails after post-data, the first with one error and
  the retries with another;
- ``slow-copies``: each copy waits ``PAGILA_TEST_COPY_DELAY`` seconds (default 0.5) after its
  commit, so a test can kill the workers with half the units copied;
- ``write-before-apply``: just before changes are applied in place, someone writes one row of
  ``public.rental`` on the target (``return_date`` of rental 5 set to 2000-01-01), after the
  proof measured it;
- ``crash-after-block-commit``: the first copy of a block range (``ctid``) to commit kills its
  own process (the message comes back: late ack, reject on worker lost), so the redelivered
  copy finds its unit committed already.

The faults are injected here, in the test's worker process, never in the package.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import psycopg2
from psycopg2 import sql

from pagila_tasks.app import app
from pagila_tasks.replication import changes, copy, postdata, verify


def _corrupt_stage() -> None:
    original = verify.measure_target

    def corrupted(s: Any, run_id: str, tables: Any, targets: Any, los: bool) -> Any:
        conn = psycopg2.connect(s.target_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("UPDATE {} SET last_name = 'CORRUPTED' WHERE actor_id = 1").format(
                    sql.Identifier(targets["public"], "actor")
                )
            )
        conn.close()
        return original(s, run_id, tables, targets, los)

    verify.measure_target = corrupted


def _hang_in_finish() -> None:
    def hang(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3600)

    postdata.post_data = hang


def _after_post_data(fault: str) -> None:
    original_post = postdata.post_data
    marker = os.environ["PAGILA_TEST_MARKER"]

    def after(*args: Any, **kwargs: Any) -> Any:
        pending = original_post(*args, **kwargs)
        first = not os.path.exists(marker)
        open(marker, "a").close()
        if fault == "crash-after-post-data":
            if first:
                os.kill(os.getpid(), signal.SIGKILL)
            return pending
        raise RuntimeError("the first error" if first else "a later error")

    postdata.post_data = after


def _slow_copies() -> None:
    original_copy = copy.copy_table
    delay = float(os.environ.get("PAGILA_TEST_COPY_DELAY", "0.5"))

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original_copy(*args, **kwargs)
        time.sleep(delay)
        return result

    copy.copy_table = slow


def _crash_after_block_commit() -> None:
    committed_copy = copy.copy_table
    marker = os.environ["PAGILA_TEST_MARKER"]

    def crash_once(s: Any, unit: Any, *args: Any, **kwargs: Any) -> Any:
        result = committed_copy(s, unit, *args, **kwargs)
        if unit.by_block and not os.path.exists(marker):
            open(marker, "a").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    copy.copy_table = crash_once


WRITTEN = "UPDATE public.rental SET return_date = '2000-01-01' WHERE rental_id = 5"
"""What ``write-before-apply`` writes on the target."""


def _write_before_apply() -> None:
    original = changes.apply

    def written_first(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        conn = psycopg2.connect(ctx.s.target_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(WRITTEN)
        conn.close()
        return original(ctx, *args, **kwargs)

    changes.apply = written_first


FAULTS = {
    "corrupt-stage": _corrupt_stage,
    "hang-in-finish": _hang_in_finish,
    "crash-after-post-data": lambda: _after_post_data("crash-after-post-data"),
    "fail-after-post-data": lambda: _after_post_data("fail-after-post-data"),
    "slow-copies": _slow_copies,
    "crash-after-block-commit": _crash_after_block_commit,
    "write-before-apply": _write_before_apply,
}


def main() -> None:
    fault = os.environ["PAGILA_TEST_FAULT"]
    if fault not in FAULTS:
        raise SystemExit(f"unknown PAGILA_TEST_FAULT {fault!r}")
    FAULTS[fault]()
    app.worker_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
