"""The snapshot holder: one small process per replication run that keeps the source snapshot.

Who holds the snapshot: the ``prepare`` task starts this process (``python -m
pagila_tasks.replication.snapshot RUN_ID``) on the worker host that runs it, in its own session
so that a worker crash does not take it down; each worker process keeps one spare started ahead
(imports done, waiting for a run id on its stdin), so a run does not wait for an interpreter
to start. The holder opens a REPEATABLE READ transaction on the source, exports its snapshot
(``pg_export_snapshot()``), publishes the id in the run record and then waits, extending the run
lock, until the run reaches a terminal state, loses its lock or passes its deadline. Every copy
does ``SET TRANSACTION SNAPSHOT`` with that id, so all of them read the source at one instant. If
this process or its connection dies, the id becomes invalid and every later copy fails with
:class:`~pagila_tasks.base.errors.SnapshotLost`: snapshots are never mixed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import redis

from pagila_tasks.base.errors import ReplicationError, SnapshotLost
from pagila_tasks.config import Settings, settings
from pagila_tasks.pg import sqlfiles, warm
from pagila_tasks.pg.db import CATALOG_PATH, connect, connection
from pagila_tasks.run import lifecycle
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import RunState
from pagila_tasks.run.record import RunRecord

log = logging.getLogger("pagila_tasks.replication.snapshot")


def hold(run_id: str) -> int:
    """Export a snapshot for ``run_id`` and keep it until the run ends; the process's exit code."""
    ctx = Context(settings())
    s = ctx.s
    try:
        conn = connect(s.source_dsn, s, f"pagila-snapshot {run_id}", search_path=CATALOG_PATH)
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        cur.execute("SELECT pg_catalog.pg_export_snapshot()")
        snapshot_id = cur.fetchone()[0]
    except Exception as exc:
        ctx.record.snapshot_failed(run_id, s.scrub(f"snapshot holder could not start: {exc}"))
        return 1
    holder = f"{socket.gethostname()}:{os.getpid()}"
    ctx.record.publish_snapshot(run_id, snapshot_id, holder)
    ctx.lock.extend(run_id)  # from here the lock lives one TTL at a time, not the start grace
    log.info("run %s: snapshot %s held by %s", run_id, snapshot_id, holder)
    try:
        _watch(ctx, run_id, cur)
        return 0
    except Exception as exc:
        message = s.scrub(f"snapshot holder {holder} lost its source connection: {exc}")
        with contextlib.suppress(redis.RedisError):
            ctx.record.snapshot_failed(run_id, message)
        log.error("run %s: %s", run_id, message)
        return 1
    finally:
        conn.close()


def _watch(ctx: Context, run_id: str, cur: psycopg2.extensions.cursor) -> None:
    """Keep the snapshot (and extend the lock) until the run ends, loses its lock, passes its
    deadline, or no copy starts in time after prepare."""
    s = ctx.s
    interval = min(max(s.lock_ttl / 3, 0.5), 5.0)
    deadline = time.monotonic() + s.max_run_seconds
    while time.monotonic() < deadline:
        time.sleep(interval)
        cur.execute("SELECT 1")  # the connection is alive, so the snapshot is too
        try:
            state, prepared, copying = ctx.record.holder_view(run_id)
            if state is None or state.terminal:
                return
            if prepared and not copying and time.time() - prepared > s.copy_start_timeout:
                _give_up(ctx, run_id, s.copy_start_timeout)
                return
            if not ctx.lock.extend(run_id):
                log.warning("run %s: lost the run lock; releasing the snapshot", run_id)
                return
        except redis.RedisError:
            continue  # Redis restarting: keep the snapshot, try again


def _give_up(ctx: Context, run_id: str, waited: int) -> None:
    """No copy started after prepare (no worker consumes the copy queue): the run fails, and the
    snapshot, which holds back vacuum on the source, is released."""
    error = (
        f"no copy started within {waited} s after prepare (PAGILA_COPY_START_TIMEOUT): is a "
        "worker consuming the copy queue? start one with: celery -A pagila_tasks worker -Q copy"
    )
    lifecycle.end(ctx, run_id, RunState.FAILED, error)
    log.error("run %s: %s", run_id, error)


@contextmanager
def snapshot_cursor(
    s: Settings, snapshot_id: str, name: str
) -> Iterator[psycopg2.extensions.cursor]:
    """A read-only source cursor that sees the run's snapshot (on a warm connection).

    Its search path is pg_dump's (:data:`~pagila_tasks.pg.db.CATALOG_PATH`): every definition it
    reads names its objects with their schemas.
    """
    with warm.borrow(s.source_dsn, s, name, search_path=CATALOG_PATH) as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            try:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_id,))
            except psycopg2.Error as exc:
                raise SnapshotLost(
                    f"snapshot {snapshot_id} is gone (its holder died?): "
                    f"{(exc.diag.message_primary or str(exc)).strip()}"
                ) from None
            yield cur


def bounds(cur: psycopg2.extensions.cursor) -> tuple[int, int]:
    """The xmin and xmax (xid8) of the snapshot ``cur`` reads: every transaction before xmin had
    ended when it was taken, so a row written after it carries an xmin at or past its xmin."""
    cur.execute(
        "SELECT pg_catalog.pg_snapshot_xmin(s)::text::bigint, "
        "pg_catalog.pg_snapshot_xmax(s)::text::bigint FROM pg_catalog.pg_current_snapshot() AS s"
    )
    xmin, xmax = cur.fetchone()
    return int(xmin), int(xmax)


def origin(cur: psycopg2.extensions.cursor) -> str | None:
    """The server's system identifier, timeline and database oid (``sql/server_origin.sql``):
    recorded measures hold only where they were taken; None when the server will not say."""
    cur.execute("SAVEPOINT pagila_origin")
    try:
        cur.execute(sqlfiles.query("server_origin"))
        found = cur.fetchone()[0]
    except psycopg2.Error:  # a managed server that hides its control data
        cur.execute("ROLLBACK TO SAVEPOINT pagila_origin")
        return None
    cur.execute("RELEASE SAVEPOINT pagila_origin")
    return str(found)


def target_mark(s: Settings, name: str) -> tuple[int, str | None]:
    """The xmin of a fresh target snapshot and the target's origin, taken just before the
    target is measured: the measures hold from that xmin (:mod:`pagila_tasks.run.recorded`)."""
    with connection(s.target_dsn, s, name) as conn, conn.cursor() as cur:
        return bounds(cur)[0], origin(cur)


_spare: subprocess.Popen[bytes] | None = None


def _spawn(run_id: str | None) -> subprocess.Popen[bytes]:
    """A holder process for ``run_id``, or (None) a spare one that waits for its run id."""
    nice = shutil.which("nice")
    prefix = [nice, "-n", "10"] if run_id is None and nice else []
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "pagila_tasks.replication.snapshot",
            *([run_id] if run_id else []),
        ],
        start_new_session=True,  # a worker crash must not take the snapshot down
        stdin=subprocess.PIPE if run_id is None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # never hold the caller's pipes open: errors go to Redis
        stderr=subprocess.DEVNULL,
    )


def prestart() -> None:
    """Keep one spare holder per worker process, its imports done, so a run does not wait on them.

    The spare starts at low priority (it competes with nothing urgent), reads one run id from
    its stdin and becomes that run's holder; if this process exits first, it reads end of file
    and exits too.
    """
    global _spare
    if _spare is None or _spare.poll() is not None:
        _spare = _spawn(None)


def _hand_to_spare(run_id: str) -> subprocess.Popen[bytes] | None:
    global _spare
    spare, _spare = _spare, None
    if spare is None or spare.poll() is not None or spare.stdin is None:
        return None
    try:
        spare.stdin.write(f"{run_id}\n".encode())
        spare.stdin.close()
    except OSError:
        return None
    return spare


def start_holder(record: RunRecord, run_id: str, timeout: float = 30.0) -> str:
    """Start the holder for ``run_id`` (a spare if one waits) and return its snapshot id."""
    proc = _hand_to_spare(run_id) or _spawn(run_id)
    record.snapshot_starting(run_id, proc.pid)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        snap = record.snapshot(run_id)
        if snap.id:
            return snap.id
        if snap.error or proc.poll() is not None:
            raise ReplicationError(snap.error or "snapshot holder exited before exporting")
        time.sleep(0.01)
    proc.kill()
    raise ReplicationError(f"snapshot holder did not export a snapshot within {timeout:.0f} s")


def main() -> int:
    """Entry point of the holder process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if len(sys.argv) == 2:
        return hold(sys.argv[1])
    if len(sys.argv) == 1:  # a spare: its run id comes on stdin, or end of file when not needed
        run_id = sys.stdin.readline().strip()
        return hold(run_id) if run_id else 0
    print(
        "usage: python -m pagila_tasks.replication.snapshot [RUN_ID]"
        "  (no RUN_ID: read it from stdin)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
