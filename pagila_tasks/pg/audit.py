"""The two audit ledgers, both in ``pagila_support`` (a schema no reset or replication touches).

The load ledger (``pagila_load_audit``) lives on the source, the replication ledger
(``replication_audit``) on the target: each beside the data it speaks for. Their DDL, inserts and
history queries are the ``sql/*_audit_*`` files; this module is the only one that runs them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import psycopg2
import psycopg2.extensions

from pagila_tasks.config import Settings
from pagila_tasks.pg import sqlfiles
from pagila_tasks.pg.db import connection

Connection = psycopg2.extensions.connection
Ledger = Literal["load", "replication"]
SCHEMA = "pagila_support"
"""The ledgers' schema: no load or replication may write into it except through this module."""


def ensure(conn: Connection, ledger: Ledger) -> None:
    """Create the ledger (and ``pagila_support``) if missing, committed on its own."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query(f"{ledger}_audit_ddl"))
    conn.commit()


def latest_load(conn: Connection, schema_sha256: str, data_sha256: str) -> dict[str, Any] | None:
    """The newest load ledger row for these fingerprints, or None."""
    with conn.cursor() as cur:
        cur.execute(
            sqlfiles.query("load_audit_latest"),
            {"schema_sha256": schema_sha256, "data_sha256": data_sha256},
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    return {"id": row[0], "loaded_at": row[1].isoformat(), "succeeded": row[2], "run_id": row[3]}


def insert_load(conn: Connection, row: dict[str, Any]) -> datetime:
    """Insert one load ledger row (in the caller's transaction); returns its ``loaded_at``, the
    clock time of the insert (the load's transaction began long before)."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("load_audit_insert"), row)
        return cur.fetchone()[1]


def insert_load_failed(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run's failed load row (in the caller's transaction); False if the run had a row."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("load_audit_insert_failed"), row)
        return cur.fetchone() is not None


def insert_replication(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert a run's replication ledger row (in the caller's transaction); False if it had one."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("replication_audit_insert"), row)
        return cur.fetchone() is not None


def replication_row(conn: Connection, run_id: str) -> tuple[Any, ...] | None:
    """The run's ledger row (succeeded, target_state, switched_at, switch_ms, error), or None."""
    with conn.cursor() as cur:
        cur.execute(sqlfiles.query("replication_audit_row"), {"run_id": run_id})
        row = cur.fetchone()
    conn.commit()
    return row


def history(s: Settings, ledger: Ledger, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of a ledger, as dicts; ``[{"error": ...}]`` when unreachable."""
    dsn = s.source_dsn if ledger == "load" else s.target_dsn
    try:
        with connection(dsn, s, "pagila-submit") as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regnamespace('pagila_support') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            try:
                cur.execute(sqlfiles.query(f"{ledger}_audit_history"), {"limit": limit})
            except psycopg2.errors.UndefinedTable:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except psycopg2.OperationalError as exc:
        return [{"error": s.scrub(str(exc).strip())}]
