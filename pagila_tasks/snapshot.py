"""The snapshot holder: one small process per replication run that keeps the source snapshot.

Who holds the snapshot: the ``prepare`` task starts this process (``python -m
pagila_tasks.snapshot RUN_ID``) on the worker host that runs it, in its own session so that a
worker crash does not take it down. It opens a REPEATABLE READ transaction on the source, exports
its snapshot (``pg_export_snapshot()``), publishes the id in the run record and then waits,
extending the run lock, until the run reaches a terminal state, loses its lock or passes its
deadline. Every copy does ``SET TRANSACTION SNAPSHOT`` with that id, so all of them read the
source at one instant. If this process or its connection dies, the id becomes invalid and every
later copy fails with :class:`~pagila_tasks.errors.SnapshotLost`: snapshots are never mixed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import redis

from pagila_tasks.config import Settings, settings
from pagila_tasks.db import connect, connection
from pagila_tasks.errors import ReplicationError, SnapshotLost
from pagila_tasks.lock import RunLock
from pagila_tasks.progress import TERMINAL, run_key

log = logging.getLogger("pagila_tasks.snapshot")


def hold(run_id: str) -> int:
    """Export a snapshot for ``run_id`` and keep it until the run ends; the process's exit code."""
    s = settings()
    client = redis.Redis.from_url(s.redis_url)
    lock = RunLock(client, s.lock_ttl)
    key = run_key(run_id)
    try:
        conn = connect(s.source_dsn, s, f"pagila-snapshot {run_id}")
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        cur.execute("SELECT pg_catalog.pg_export_snapshot()")
        snapshot_id = cur.fetchone()[0]
    except Exception as exc:
        client.hset(key, "snapshot_error", s.scrub(f"snapshot holder could not start: {exc}"))
        return 1
    holder = f"{socket.gethostname()}:{os.getpid()}"
    client.hset(key, mapping={"snapshot": snapshot_id, "snapshot_holder": holder})
    lock.extend(run_id)  # from here the lock lives one TTL at a time, not the start grace
    log.info("run %s: snapshot %s held by %s", run_id, snapshot_id, holder)
    interval = min(max(s.lock_ttl / 3, 0.5), 5.0)
    deadline = time.monotonic() + s.max_run_seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(interval)
            cur.execute("SELECT 1")  # the connection is alive, so the snapshot is too
            try:
                state = client.hget(key, "state")
                if state is None or state.decode() in TERMINAL:
                    return 0
                if not lock.extend(run_id):
                    log.warning("run %s: lost the run lock; releasing the snapshot", run_id)
                    return 0
            except redis.RedisError:
                continue  # Redis restarting: keep the snapshot, try again
        return 0
    except Exception as exc:
        message = s.scrub(f"snapshot holder {holder} lost its source connection: {exc}")
        with contextlib.suppress(redis.RedisError):
            client.hset(key, "snapshot_error", message)
        log.error("run %s: %s", run_id, message)
        return 1
    finally:
        conn.close()


@contextmanager
def snapshot_cursor(
    s: Settings, snapshot_id: str, name: str
) -> Iterator[psycopg2.extensions.cursor]:
    """A read-only source cursor that sees the run's snapshot."""
    with connection(s.source_dsn, s, name) as conn:
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


def start_holder(run_id: str, client: redis.Redis, timeout: float = 30.0) -> str:
    """Start the holder for ``run_id`` and return the snapshot id once it is published."""
    key = run_key(run_id)
    client.hdel(key, "snapshot", "snapshot_error")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pagila_tasks.snapshot", run_id],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # never hold the caller's pipes open: errors go to Redis
        stderr=subprocess.DEVNULL,
    )
    client.hset(key, "snapshot_pid", str(proc.pid))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        snap, err = client.hmget(key, "snapshot", "snapshot_error")
        if snap:
            return snap.decode()
        if err or proc.poll() is not None:
            raise ReplicationError((err or b"snapshot holder exited before exporting").decode())
        time.sleep(0.05)
    proc.kill()
    raise ReplicationError(f"snapshot holder did not export a snapshot within {timeout:.0f} s")


def main() -> int:
    """Entry point of the holder process."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if len(sys.argv) != 2:
        print("usage: python -m pagila_tasks.snapshot RUN_ID", file=sys.stderr)
        return 2
    return hold(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
