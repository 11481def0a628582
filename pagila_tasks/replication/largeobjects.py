"""Large objects: copied through a stage table, written in the switch's transaction, verified.

Large objects belong to the database, not to a schema, so ``pg_dump --schema`` leaves them out
and no schema swap can carry them. A run copies them like a table (one ``copy_table`` unit
reads ``lo_get`` of each in the snapshot into :data:`STAGE`), verifies the stage against the
source, and the transaction that switches the copies (or ends an in-place run) replaces the
target's own large objects with the staged ones, keeping their oids, since columns of type
``oid`` point at them. The stage sits in the bookkeeping schema but holds a copy's data, not
bookkeeping: this module, not :mod:`pagila_tasks.pg.support`, runs its statements.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.config import SUPPORT_SCHEMA
from pagila_tasks.pg import sqlfiles
from pagila_tasks.run.plan import Unit

Cursor = psycopg2.extensions.cursor
NAME = "large objects"
"""How the unit and its verification line are named."""
STAGE = sql.Identifier(SUPPORT_SCHEMA, "large_object_stage")


def count(cur: Cursor) -> int:
    """How many large objects this database has."""
    cur.execute("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata")
    return int(cur.fetchone()[0])


def unit() -> Unit:
    """The one copy unit of a run's large objects."""
    return Unit("pg_catalog", "pg_largeobject_metadata", (), kind="large_objects")


def copy_out(fmt: sql.Composable) -> sql.Composable:
    return sql.SQL(
        "COPY (SELECT m.oid, pg_catalog.lo_get(m.oid) FROM pg_catalog.pg_largeobject_metadata m)"
        " TO STDOUT WITH {}"
    ).format(fmt)


def copy_in(fmt: sql.Composable) -> sql.Composable:
    return sql.SQL("COPY {} (loid, data) FROM STDIN WITH {}").format(STAGE, fmt)


def empty() -> sql.Composable:
    return sql.SQL("TRUNCATE {}").format(STAGE)


def measure(cur: Cursor, staged: bool) -> tuple[int, str]:
    """Count and checksum of the database's large objects, or of the staged ones."""
    cur.execute(
        sqlfiles.query("large_object_stage_checksum" if staged else "large_object_checksum")
    )
    n, checksum = cur.fetchone()
    return int(n), f"lo:{checksum}"


def apply(cur: Cursor) -> tuple[int, str]:
    """Replace the target's large objects by the staged ones; returns their measure, read back."""
    staged = measure(cur, staged=True)
    cur.execute(sqlfiles.query("large_object_apply"))
    live = measure(cur, staged=False)
    if live != staged:
        raise RuntimeError(f"large objects after writing: {live}, staged: {staged}")
    return live
