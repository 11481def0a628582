"""Extensions: created on the target before anything is restored, never dropped by a run.

``pg_dump --schema`` leaves ``CREATE EXTENSION`` out, yet tables and functions of the replicated
schemas use what extensions define (``DEFAULT uuid_generate_v4()``, a ``citext`` column, a
trigram index). Every extension they need must exist on the target, in the schema it has on the
source, before pre-data runs. A database owner may create *trusted* extensions; any other needs
an administrator, and the run says which statement to ask for, before it touches the target.

An extension cannot move between copies: ``ALTER EXTENSION ... SET SCHEMA`` needs its member
objects' owner, and a database owner does not own the objects of a trusted extension it
created. So a run whose replicated schemas hold an extension replaces them in place, emptying
each of everything but the extension's objects (see :mod:`.replicate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import ExtensionError
from pagila_tasks.pg import sqlfiles

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor


@dataclass(frozen=True)
class Extension:
    """An extension as the source has it: where it lives and which version."""

    name: str
    schema: str
    version: str
    relocatable: bool

    def as_list(self) -> list[object]:
        return [self.name, self.schema, self.version, self.relocatable]

    def statement(self) -> str:
        """The one statement an administrator would run to create it on the target."""
        return (
            f"CREATE EXTENSION IF NOT EXISTS {names.quote(self.name)} "
            f"WITH SCHEMA {names.quote(self.schema)};"
        )


def needed(cur: Cursor, schemas: tuple[str, ...]) -> list[Extension]:
    """The extensions the replicated schemas use, read on the source."""
    cur.execute(sqlfiles.query("catalog_extensions"), {"schemas": list(schemas)})
    return [Extension(n, s, v, bool(r)) for n, s, v, r in cur.fetchall()]


@dataclass(frozen=True)
class TargetPlan:
    """What the target lacks: extensions to create, where, and at which version (None: default)."""

    outside: list[tuple[Extension, str | None]]
    inside: list[tuple[Extension, str | None]]


def check_target(cur: Cursor, wanted: list[Extension], replicated: tuple[str, ...]) -> TargetPlan:
    """Refuse what the target cannot do; otherwise say what must be created where.

    Raises ``ExtensionError`` naming the extension and what an administrator must do.
    """
    outside: list[tuple[Extension, str | None]] = []
    inside: list[tuple[Extension, str | None]] = []
    if not wanted:
        return TargetPlan(outside, inside)
    cur.execute(sqlfiles.query("target_extensions"), {"names": [e.name for e in wanted]})
    info = {row[0]: row for row in cur.fetchall()}
    for ext in wanted:
        _, installed_in, _, _, available, trusted, superuser, versions = info[ext.name]
        if installed_in is not None:
            if installed_in != ext.schema:
                raise ExtensionError(
                    f"extension {ext.name} is in schema {names.quote(installed_in)} on the target "
                    f"but {names.quote(ext.schema)} on the source; an administrator must run: "
                    f"ALTER EXTENSION {names.quote(ext.name)} "
                    f"SET SCHEMA {names.quote(ext.schema)};"
                )
            continue
        if not available:
            raise ExtensionError(
                f"extension {ext.name} is not installed on the target server; install its "
                f"package there, then an administrator runs: {ext.statement()}"
            )
        if not (trusted or superuser):
            raise ExtensionError(
                f"extension {ext.name} can only be created by a superuser on the target; an "
                f"administrator must run: {ext.statement()}"
            )
        version = ext.version if ext.version in (versions or []) else None
        (inside if ext.schema in replicated else outside).append((ext, version))
    return TargetPlan(outside, inside)


def create(cur: Cursor, ext: Extension, version: str | None, schema: str | None = None) -> None:
    """``CREATE EXTENSION`` in ``schema`` (default: its source schema), at ``version``."""
    cur.execute(
        sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}{} CASCADE").format(
            sql.Identifier(ext.name),
            sql.Identifier(schema or ext.schema),
            sql.SQL(" VERSION {}").format(sql.Literal(version)) if version else sql.SQL(""),
        )
    )
    log.info("created extension %s in %s", ext.name, schema or ext.schema)


def create_outside(
    conn: psycopg2.extensions.connection,
    plan: TargetPlan,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Create the extensions of schemas no run replaces (kept across runs), committed after
    ``before_commit`` (the run's check)."""
    if not plan.outside:
        return
    with conn.cursor() as cur:
        for ext, version in plan.outside:
            cur.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ext.schema))
            )
            create(cur, ext, version)
    if before_commit is not None:
        before_commit()
    conn.commit()
