"""Warm connections: a worker process keeps its idle source and target connections between tasks.

Opening a connection (TCP, SCRAM, a new backend) costs about as much as copying a small table,
and a run of Pagila has 21 copies of two connections each. A kept connection is reused only
after one cheap round trip succeeds (setting its ``application_name`` for the new user, so an
operator still sees which unit a backend serves); a connection that raised, or that is left
inside a transaction it cannot roll back, is closed, never reused. Idle connections hold no
locks and no snapshot. ``PAGILA_WARM_CONNECTIONS=0`` opens a new connection every time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from pagila_tasks.config import Settings
from pagila_tasks.pg import db

#: At most this many idle connections per server and process (finish uses a few at once).
MAX_IDLE = 3

_idle: dict[tuple[int, str, str | None], list[psycopg2.extensions.connection]] = {}
_guard = threading.Lock()


def _reuse(conn: psycopg2.extensions.connection, application_name: str) -> bool:
    """True if ``conn`` answered a round trip (which also renames it for its new user)."""
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET application_name = %s", (application_name[:63],))
        conn.autocommit = False
        return True
    except psycopg2.Error:
        conn.close()
        return False


def _checkout(
    key: tuple[int, str, str | None], application_name: str
) -> psycopg2.extensions.connection | None:
    while True:
        with _guard:
            stack = _idle.get(key)
            conn = stack.pop() if stack else None
        if conn is None:
            return None
        if not conn.closed and _reuse(conn, application_name):
            return conn


def _checkin(key: tuple[int, str, str | None], conn: psycopg2.extensions.connection) -> None:
    try:
        conn.rollback()  # ends a read-only transaction; a write must have been committed
        # back to the server's defaults for the next user (client-side only: no round trip)
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT")
    except psycopg2.Error:
        conn.close()
        return
    with _guard:
        stack = _idle.setdefault(key, [])
        if len(stack) < MAX_IDLE:
            stack.append(conn)
            return
    conn.close()


@contextmanager
def borrow(
    dsn: str, s: Settings, application_name: str, search_path: str | None = None
) -> Iterator[psycopg2.extensions.connection]:
    """Borrow a connection to ``dsn`` (a kept one if it still answers); kept again on a clean exit.

    Unlike :func:`pagila_tasks.pg.db.connection`, which opens and closes a new one, the connection
    outlives the ``with`` block unless it raised.
    """
    if not s.warm_connections:
        with db.connection(dsn, s, application_name, search_path=search_path) as conn:
            yield conn
        return
    key = (os.getpid(), dsn, search_path)  # a forked child never shares its parent's sockets
    conn = _checkout(key, application_name) or db.connect(
        dsn, s, application_name, search_path=search_path
    )
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    if conn.closed:
        return
    _checkin(key, conn)


def close_all() -> None:
    """Close every idle connection of this process (worker shutdown, tests)."""
    with _guard:
        conns = [c for stack in _idle.values() for c in stack]
        _idle.clear()
    for conn in conns:
        conn.close()
