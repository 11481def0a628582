"""What stops a run from destroying the wrong database: refused before any lock or write.

A run replaces the replicated schemas of the target. Two mistakes would destroy data that is
not a replica: a target DSN that reaches the source itself, and a target schema that holds
someone's own objects. The first is refused always; the second unless the operator says the
target may be overwritten (``--overwrite-target``, ``PAGILA_OVERWRITE_TARGET=1``). Ownership is
decided per schema, not per database: a schema is the project's when a run switched it in
(recorded by :func:`pagila_tasks.pg.support.register_live`), so a replica's own ``payroll``
schema is refused like any other. A schema that merely carries a staging copy's name but was
never registered is someone's too: refused, never renamed or dropped. The bookkeeping it reads
is :mod:`pagila_tasks.pg.support`'s; this module only decides.
"""

from __future__ import annotations

import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import UsageError
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.replication import staging

Cursor = psycopg2.extensions.cursor


def identity(cur: Cursor) -> tuple[str, str]:
    """(system identifier, database name) of the server ``cur`` is connected to."""
    cur.execute(sqlfiles.query("target_identity"))
    system_id, database = cur.fetchone()
    return str(system_id), str(database)


def project_schemas(cur: Cursor) -> set[str]:
    """The live schemas runs switched in; on a target an earlier version replicated (a ledger
    but no register), the schemas of the tables its last successful run verified."""
    if not support.is_replica(cur):
        return set()
    found = support.live_schemas(cur)
    if found:
        return found
    return {names.split_sql(t)[0] for t in support.last_verified_tables(cur)}


def replaceable(cur: Cursor, schemas: tuple[str, ...], overwrite: bool) -> frozenset[str]:
    """The schemas a run may replace whole although no run put them there: with
    ``--overwrite-target``, what they hold is let go, not kept."""
    return frozenset(set(schemas) - project_schemas(cur)) if overwrite else frozenset()


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
    registered = set(support.registered_any(target))
    squatted = [
        name
        for name in (staging.stage_name(s) for s in schemas)
        if name not in registered and staging.exists(target, name)
    ]
    if squatted:
        raise UsageError(
            f"the target holds schema {', '.join(squatted)}, which has the name of this run's "
            "staging copy but was not created by a run: rename or drop it first"
        )
    if overwrite:
        return
    ours = project_schemas(target)
    theirs = [s for s in schemas if s not in ours and owned_objects(target, (s,))]
    if theirs:
        shown = ", ".join(names.quote(s) for s in theirs)
        found = owned_objects(target, tuple(theirs))
        raise UsageError(
            f"the target's schema(s) {shown} hold {found} objects that no run of this project "
            "put there (never a replica of them): pass --overwrite-target (or set "
            "PAGILA_OVERWRITE_TARGET=1) to replace them"
        )
