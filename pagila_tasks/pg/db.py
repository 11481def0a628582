"""Connections to the source and target: one place that sets timeouts, keepalives and names.

Keepalives and a connect timeout make a dead or paused server an error within a bounded time
instead of a hang; ``application_name`` lets an operator (or a fault test) find each backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from pagila_tasks.config import Settings

CATALOG_PATH = "pg_catalog"
"""The search path of sessions that read definitions: as pg_dump's, so every name comes back
qualified whatever ``ALTER DATABASE ... SET search_path`` the source carries."""


TEXT_FORM = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
    " -c bytea_output=hex -c lc_monetary=C"
)
"""Session settings that fix the text form of values, whatever each database's defaults: text
COPY and text checksums then read the same on the source and the target."""


def connect(
    dsn: str,
    s: Settings,
    application_name: str,
    *,
    autocommit: bool = False,
    search_path: str | None = None,
) -> psycopg2.extensions.connection:
    """Open a connection with the project's session settings (UTC, timeouts, keepalives).

    ``row_security=off`` as in pg_dump: a table whose policies would hide rows from this user
    (``FORCE ROW LEVEL SECURITY``) is an error naming it, never a silently partial copy that
    verifies against the same partial view. ``search_path`` (e.g. :data:`CATALOG_PATH`)
    overrides the database's and the role's.
    """
    options = TEXT_FORM + " -c row_security=off"
    if search_path:
        options += f" -c search_path={search_path}"
    if s.statement_timeout_ms:
        options += f" -c statement_timeout={s.statement_timeout_ms}"
        options += f" -c lock_timeout={s.statement_timeout_ms}"
    conn = psycopg2.connect(
        dsn,
        application_name=application_name[:63],
        connect_timeout=s.connect_timeout,
        keepalives=1,
        keepalives_idle=s.keepalive_idle,
        keepalives_interval=max(s.keepalive_idle // 3, 1),
        keepalives_count=3,
        tcp_user_timeout=s.keepalive_idle * 3 * 1000,
        options=options,
    )
    conn.autocommit = autocommit
    return conn


@contextmanager
def connection(
    dsn: str,
    s: Settings,
    application_name: str,
    *,
    autocommit: bool = False,
    search_path: str | None = None,
) -> Iterator[psycopg2.extensions.connection]:
    """Like :func:`connect`, closing the connection (and rolling back) on the way out."""
    conn = connect(dsn, s, application_name, autocommit=autocommit, search_path=search_path)
    try:
        yield conn
    finally:
        conn.close()


def build_memory(cur: psycopg2.extensions.cursor, s: Settings, local: bool = True) -> None:
    """``PAGILA_MAINTENANCE_WORK_MEM`` for the index builds and key checks that follow (their
    sort and hash memory); ``local``: for this transaction only. Any user may set it."""
    if s.maintenance_work_mem:
        scope = "SET LOCAL" if local else "SET"
        cur.execute(f"{scope} maintenance_work_mem = %s", (s.maintenance_work_mem,))
