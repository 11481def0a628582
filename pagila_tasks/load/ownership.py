"""What a load may wipe: the source's ``public`` only when it holds nothing but what loads of this
project created, and nothing outside it depends on it.

A load resets ``public`` (``DROP SCHEMA public CASCADE``). Pointed at a database with tables of
its own there, or with views and foreign keys in other schemas over them, that reset would drop
someone else's data. So every successful load records, in its own transaction, what it created
in ``public`` (the load manifest, kept by :mod:`pagila_tasks.pg.support`: pg_identify_object's
type and identity of each object, see ``sql/public_objects.sql``), and before any reset (in
the submit-time checks and again inside the load's transaction) :func:`check` refuses when
``public`` holds an object no recorded load created, or when an object in another schema
depends on one in ``public``. An empty ``public`` (a new database) is fine. ``--force-reset``
lets the reset go ahead, and the run's result lists what it dropped.

A source loaded by an earlier version of the project (a load ledger with a successful row but no
manifest) counts as loaded by the project when every object in its ``public`` is one the pinned
Pagila files create (``sql/pinned_public_objects.sql``): such a ``public`` holds nothing
foreign. Files loaded with ``--sql-dir`` by an earlier version need ``--force-reset`` once.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

from pagila_tasks.base.errors import UsageError
from pagila_tasks.load.sqlscript import LOADED_SCHEMA
from pagila_tasks.pg import sqlfiles, support

Cursor = psycopg2.extensions.cursor
Object = tuple[str, str]
SHOWN = 20
"""How many objects a refusal names before it gives the count."""


@dataclass(frozen=True)
class Foreign:
    """What a reset of ``public`` would drop that no load of this project created."""

    unknown: list[Object]
    dependents: list[Object]

    def __bool__(self) -> bool:
        return bool(self.unknown or self.dependents)

    def lines(self) -> list[str]:
        """Every object, ``type identity``, those in ``public`` first."""
        return [f"{kind} {identity}" for kind, identity in (*self.unknown, *self.dependents)]

    def describe(self) -> str:
        """Both lists, each with its first :data:`SHOWN` objects and its count."""
        parts = []
        if self.unknown:
            parts.append(
                f"{LOADED_SCHEMA} holds what no load of this project created: "
                f"{_listed(self.unknown)}"
            )
        if self.dependents:
            parts.append(
                f"objects in other schemas depend on {LOADED_SCHEMA}: {_listed(self.dependents)}"
            )
        return "; ".join(parts)


def _listed(objects: list[Object]) -> str:
    shown = ", ".join(f"{kind} {identity}" for kind, identity in objects[:SHOWN])
    more = f", ... ({len(objects)} in all)" if len(objects) > SHOWN else f" ({len(objects)})"
    return shown + more


def _rows(cur: Cursor, name: str, params: dict[str, str] | None = None) -> set[Object]:
    cur.execute(sqlfiles.query(name), params)
    return {(kind, identity) for kind, identity in cur.fetchall()}


def public_objects(cur: Cursor) -> set[Object]:
    """Every object in ``public`` (see ``sql/public_objects.sql``)."""
    return _rows(cur, "public_objects", {"schema": LOADED_SCHEMA})


def _created_by_loads(cur: Cursor) -> set[Object] | None:
    """What loads of this project created in ``public``: the manifest, else (a source an
    earlier version loaded) the pinned files' objects; None when no load ever succeeded."""
    has_manifest, has_ledger = support.load_state(cur)
    if has_manifest and (manifest := support.load_manifest(cur)):
        return manifest
    if has_ledger and support.any_load_succeeded(cur):
        return _rows(cur, "pinned_public_objects")
    return None


def foreign(cur: Cursor) -> Foreign:
    """What a reset of ``public`` would drop that no recorded load created (read only)."""
    current = public_objects(cur)
    known = (_created_by_loads(cur) or set()) if current else set()
    dependents = sorted(_rows(cur, "public_dependents", {"schema": LOADED_SCHEMA}))
    return Foreign(sorted(current - known), dependents)


def check(cur: Cursor, force_reset: bool) -> list[str]:
    """Refuse (:class:`UsageError`) a reset of ``public`` that would drop what no load of this
    project created, unless ``force_reset``; returns what the forced reset will drop."""
    found = foreign(cur)
    if found and not force_reset:
        raise UsageError(
            f"the source's {found.describe()}; a load drops {LOADED_SCHEMA} with everything in "
            "it and depending on it (DROP SCHEMA public CASCADE): pass --force-reset "
            "(PAGILA_FORCE_RESET=1) to load anyway"
        )
    return found.lines()


def record(cur: Cursor, run_id: str) -> int:
    """Write the manifest: what ``public`` holds now, at the end of a successful load (in its
    transaction). Returns the number of objects recorded."""
    objects = sorted(public_objects(cur))
    support.record_load(cur, run_id, objects)
    return len(objects)
