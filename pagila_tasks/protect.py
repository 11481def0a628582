"""What stops a run from destroying the wrong database: refused before any lock or write.

A run replaces the replicated schemas of the target. Two mistakes would destroy data that is
not a replica: a target DSN that reaches the source itself, and a target whose schemas hold
someone's own objects. The first is refused always; the second unless the operator says the
target may be overwritten (``--overwrite-target``, ``PAGILA_OVERWRITE_TARGET=1``). A target
that carries this project's replication ledger has been a replica before, and is replaced.
"""

from __future__ import annotations

import psycopg2.extensions

from pagila_tasks import names, sqlfiles
from pagila_tasks.errors import UsageError

Cursor = psycopg2.extensions.cursor


def identity(cur: Cursor) -> tuple[str, str]:
    """(system identifier, database name) of the server ``cur`` is connected to."""
    cur.execute(sqlfiles.query("target_identity"))
    system_id, database = cur.fetchone()
    return str(system_id), str(database)


def is_replica(cur: Cursor) -> bool:
    """True when the target carries the replication ledger (some run has written to it)."""
    cur.execute("SELECT to_regclass('pagila_support.replication_audit') IS NOT NULL")
    return bool(cur.fetchone()[0])


def owned_objects(cur: Cursor, schemas: tuple[str, ...]) -> int:
    """How many objects (not extensions') the schemas hold on this server."""
    cur.execute(sqlfiles.query("schema_objects"), {"schemas": list(schemas)})
    return int(cur.fetchone()[0])


def check(source: Cursor, target: Cursor, schemas: tuple[str, ...], overwrite: bool) -> None:
    """Raise :class:`UsageError` (one line) when the run would overwrite what is no replica."""
    if identity(source) == identity(target):
        raise UsageError(
            "PAGILA_TARGET_DSN reaches the source database itself (same server system "
            "identifier and database name): refusing to replicate a database onto itself"
        )
    if overwrite or is_replica(target):
        return
    found = owned_objects(target, schemas)
    if found:
        shown = ", ".join(names.quote(s) for s in schemas)
        raise UsageError(
            f"the target's schemas {shown} hold {found} objects, but the target has no "
            "replication ledger (pagila_support.replication_audit): it was never a replica; "
            "pass --overwrite-target (or set PAGILA_OVERWRITE_TARGET=1) to replace them"
        )
