"""Staging schemas: where a ``swap`` run builds its copy beside the live one.

Each replicated schema ``S`` is built in ``pagila_stage_<hash of S>`` (a name within the 63-byte
limit whatever ``S`` is) and registered as the run's (the registry is
:mod:`pagila_tasks.pg.support`'s), so only schemas a run created are ever dropped as leftovers.

The schema dump names every object by its live name (``public.film``, and inside views,
defaults, ``nextval('public.seq'::regclass)``, triggers, foreign keys). Rewriting that text would
be fragile; instead each step that runs such DDL runs it *as live*: inside one transaction the
live schemas step aside (renamed), the staging schemas take the live names, the DDL runs, and
everything is renamed back before the commit. PostgreSQL resolves names when DDL runs and keeps
object ids, so views, defaults and keys end up bound to the staging objects, and keep following
them when the switch renames the staging schemas to the live names. Readers never see the
renames: the transaction's catalog changes stay invisible to them until the commit, and at the
commit the names are back where they were.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.replication import keep
from pagila_tasks.run.model import ReplicationPlan

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor


def _hash(name: str, n: int) -> str:
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()[:n]


def stage_name(live: str) -> str:
    """Where ``live`` is built by a swap run."""
    return f"pagila_stage_{_hash(live, 24)}"


def aside_name(live: str) -> str:
    """Where ``live`` steps aside inside one transaction (never committed under this name)."""
    return f"pagila_aside_{_hash(live, 24)}"


def old_name(live: str, run_id: str) -> str:
    """Where the switch of ``run_id`` puts the previous copy of ``live`` until it is dropped."""
    return f"pagila_old_{names.run_token(run_id)}_{_hash(live, 16)}"


@dataclass(frozen=True)
class Layout:
    """Where each replicated schema is built: under a staging name (swap) or its own (in-place)."""

    schemas: tuple[str, ...]
    swap: bool

    def build(self, live: str) -> str:
        return stage_name(live) if self.swap else live

    def targets(self) -> dict[str, str]:
        """live -> build, kept in the run record so every copy writes where prepare built."""
        return {s: self.build(s) for s in self.schemas}


DROP_WAIT_MS = 2000
"""How long dropping a previous copy waits for readers still on it before leaving it for the
next run (a DROP queued behind a reader would hold up nobody else, but must not hang a run)."""


def layout_of(plan: ReplicationPlan) -> Layout:
    """Where the run of ``plan`` builds each schema (as prepare decided it)."""
    return Layout(plan.schemas, swap=plan.swap)


def exists(cur: Cursor, schema: str) -> bool:
    cur.execute("SELECT to_regnamespace(%s) IS NOT NULL", (sql.Identifier(schema).as_string(cur),))
    return bool(cur.fetchone()[0])


def _rename(cur: Cursor, old: str, new: str) -> None:
    cur.execute(
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )


def extensions_in(cur: Cursor, schemas: list[str]) -> list[tuple[str, str]]:
    """(extension, schema) for the extensions living in ``schemas`` on this server."""
    if not schemas:
        return []
    cur.execute(sqlfiles.query("extensions_in_schemas"), {"schemas": schemas})
    return [(e, s) for e, s in cur.fetchall()]


@contextmanager
def as_live(cur: Cursor, layout: Layout, create: bool = False) -> Iterator[None]:
    """Inside the caller's transaction, let DDL written for the live names reach the build.

    Live schemas step aside, build schemas take the live names (``create``: new ones are made),
    and on the way out everything goes back. The caller commits or rolls back the whole. (A
    swap never has an extension in a replicated schema: see :mod:`.extensions`.)
    """
    if not layout.swap:
        yield
        return
    present = [s for s in layout.schemas if exists(cur, s)]
    for live in present:
        _rename(cur, live, aside_name(live))
    for live in layout.schemas:
        build = layout.build(live)
        if exists(cur, build):
            _rename(cur, build, live)
        elif create:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(live)))
    yield
    for live in layout.schemas:
        if exists(cur, live):
            _rename(cur, live, layout.build(live))
    for live in present:
        _rename(cur, aside_name(live), live)


def register(cur: Cursor, name: str, kind: str, live: str, run_id: str) -> None:
    """Record a schema this run created (in the transaction that created it): see
    :func:`pagila_tasks.pg.support.register`."""
    support.register(cur, name, kind, live, run_id)


def registered(cur: Cursor, kind: str, run_id: str | None = None) -> list[str]:
    """Registered schemas of ``kind`` (of one run, or of every run)."""
    return support.registered(cur, kind, run_id)


def register_live(cur: Cursor, schemas: tuple[str, ...], run_id: str) -> None:
    """Record the live schemas this run switched in (or replaced in place) as the project's."""
    support.register_live(cur, schemas, run_id)


def drop(
    conn: psycopg2.extensions.connection,
    names: list[str],
    lock_timeout_ms: int,
    keep_extensions: bool = True,
    take_dependents: bool = False,
) -> list[str]:
    """Drop registered schemas, each in its own transaction, waiting at most ``lock_timeout_ms``
    for the locks (a reader still on an old copy keeps it, for the next run to drop).

    With ``keep_extensions`` (previous copies), a schema that still holds an extension is left
    alone: the CASCADE would take the extension and its users in the live copy with it. A
    staging copy's own extensions belong to it alone. A schema that something elsewhere still
    depends on (a view someone made after the switch read what to keep) is left alone too,
    unless ``take_dependents`` (``--drop-dependents``): the CASCADE would take it silently.
    Returns the names left behind.
    """
    left = []
    with conn.cursor() as cur:
        for name in names:
            try:
                cur.execute("SET LOCAL lock_timeout = %s", (f"{lock_timeout_ms}ms",))
                if keep_extensions and extensions_in(cur, [name]):
                    log.warning("schema %s still holds an extension; not dropped", name)
                    conn.rollback()
                    left.append(name)
                    continue
                others = [] if take_dependents else keep.outside_dependents(cur, name)
                if others:
                    log.warning("schema %s not dropped: %s depend on it", name, "; ".join(others))
                    conn.rollback()
                    left.append(name)
                    continue
                cur.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
                support.unregister(cur, name)
                conn.commit()
            except psycopg2.errors.LockNotAvailable:
                conn.rollback()
                log.info("schema %s is still in use; left for a later run to drop", name)
                left.append(name)
    return left


def empty(cur: Cursor, schema: str) -> None:
    """Drop everything in ``schema`` but what extensions put there (in-place, in the caller's
    transaction): an extension, and the types and functions of it that tables use, live on, and
    so do the schema itself, its privileges and its default privileges."""
    if not exists(cur, schema):
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return
    cur.execute(sqlfiles.query("schema_drop_statements"), {"schema": schema})
    for (statement,) in cur.fetchall():
        cur.execute(statement)
