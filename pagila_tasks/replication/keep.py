"""What a run keeps of what the target's users built on and around the replica.

A replica is where people build: views in their own schemas, grants to a reader role, an index a
dashboard needs. The project owns, in each replicated schema, the objects the source had at the
last switch (the *manifest*, recorded in the switch's transaction); everything else on the
target is someone's, and a run keeps it working on the new copy:

- objects elsewhere that depend on replicated objects (views, materialized views, functions,
  triggers, policies, column defaults, constraints, indexes, rules; directly or through each
  other) are dropped and made again against the new copy, in the switch's transaction;
  materialized views (with their data) and constraints (with their check of the new rows) are
  built beforehand under a temporary name and swapped in by a rename, so the switch stays short;
- indexes, constraints, triggers, policies and rules someone added to a replicated table are built
  on the new copy before the switch;
- privileges, default privileges, owners (where the run's user may give objects to that role),
  comments made on the target and security labels are added again in the switch.

``in-place`` runs do the same around their reset: the dependents are dropped before it (the plan
kept on the target, so a failed run's errback, or the next run, puts them back) and made again
once the new copy is built.

This module decides what to keep and how; what it records (the plans, the manifest, the schemas
that are the project's own) is read and written by :mod:`pagila_tasks.pg.support`.

What cannot be made again (a table whose column uses a replicated type, a table someone created
inside a replicated schema) is named before any lock and refused unless ``--drop-dependents``.
The trap this module exists for: ``DROP SCHEMA ... CASCADE`` of a previous copy silently takes
every dependent elsewhere with it; :func:`outside_dependents` lets the dropper refuse instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import SUPPORT_SCHEMA
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.replication.keepplan import (
    TEMP_PREFIX,
    Annotation,
    Dependent,
    KeepPlan,
    Manifest,
    Own,
    Step,
    Survey,
    plan,
)

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

# -- reading (target and source) -------------------------------------------------------------


@contextmanager
def catalog_path(cur: Cursor) -> Iterator[None]:
    """Definitions read inside name every object with its schema (as pg_dump's do), whatever
    the session's search path; the caller's is back afterwards."""
    cur.execute("SELECT current_setting('search_path')")
    before = cur.fetchone()[0]
    cur.execute("SELECT set_config('search_path', 'pg_catalog', true)")
    try:
        yield
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", (before,))


def project_schemas(cur: Cursor) -> list[str]:
    """Schemas whose objects are the project's own: the bookkeeping schema and every staging or
    previous copy a run registered."""
    return [SUPPORT_SCHEMA, *support.registered_any(cur)]


def assess(
    target: Cursor,
    incoming: Manifest,
    schemas: Iterable[str],
    swap: bool,
    token: str,
    replaceable: frozenset[str] = frozenset(),
) -> KeepPlan:
    """Read what the target's users built on and around ``schemas`` and plan to keep it: what
    the project owns is the last switch's record, else (a target an earlier version replicated,
    or a first run) what the source holds (``incoming``, see :func:`source_manifest`)."""
    schemas = tuple(schemas)
    with catalog_path(target):
        found = survey(target, schemas, project_schemas(target))
        manifest = recorded_manifest(target, schemas) or incoming
    return plan(found, manifest, swap, token, replaceable, incoming)


def survey(cur: Cursor, schemas: Iterable[str], ignore: Iterable[str]) -> Survey:
    """Read the live schemas and their dependents elsewhere (``cur`` on ``pg_catalog`` path)."""
    schemas = tuple(schemas)
    cur.execute(sqlfiles.query("keep_closure"), {"schemas": list(schemas), "ignore": list(ignore)})
    deps = tuple(Dependent(r[0], tuple(p for p in r[1] if p), *r[2:11]) for r in cur.fetchall())
    return Survey(
        schemas,
        deps,
        objects(cur, schemas),
        annotations(cur, schemas, [d.key for d in deps]),
    )


def objects(cur: Cursor, schemas: Iterable[str]) -> tuple[Own, ...]:
    cur.execute(sqlfiles.query("keep_objects"), {"schemas": list(schemas)})
    return tuple(Own(*r[:5], tuple(r[5])) for r in cur.fetchall())


def annotations(cur: Cursor, schemas: Iterable[str], units: list[str]) -> tuple[Annotation, ...]:
    cur.execute(sqlfiles.query("keep_annotations"), {"schemas": list(schemas), "units": units})
    return tuple(Annotation(*r) for r in cur.fetchall())


def source_manifest(cur: Cursor, schemas: Iterable[str]) -> Manifest:
    """What a copy of ``schemas`` holds (read on the source, in the run's snapshot)."""
    schemas = tuple(schemas)
    with catalog_path(cur):
        owns = objects(cur, schemas)
        notes = [a for a in annotations(cur, schemas, []) if a.kind == "comment" and a.inside]
    return Manifest(
        frozenset(o.key for o in owns),
        {a.target: a.value or "" for a in notes},
        {o.key: o.schema for o in owns} | {a.target: a.schema for a in notes},
    )


def recorded_manifest(cur: Cursor, schemas: Iterable[str]) -> Manifest | None:
    """The manifest the last switch recorded for ``schemas``; None when none was (a target an
    earlier version of the project replicated, or a first run)."""
    rows = support.manifest_rows(cur, schemas)
    if not rows:
        return None
    objs = frozenset(key for kind, key, _ in rows if kind == "object")
    comments = {key: value for kind, key, value in rows if kind == "comment"}
    return Manifest(objs, comments)


# -- running ---------------------------------------------------------------------------------


def run_steps(
    cur: Cursor, steps: Iterable[Step], when: str, best_effort: bool = False
) -> list[str]:
    """Run ``steps`` in the caller's transaction; an optional one whose object is gone is
    skipped (returned), any other failure names the object it was keeping. ``best_effort``
    (putting back what a failed run took down): every step may fail alone."""
    skipped = []
    for step in steps:
        if best_effort:
            cur.execute("SAVEPOINT pagila_keep")
            try:
                cur.execute(step.sql)
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT pagila_keep")
                skipped.append(f"{step.what}: {' '.join(str(exc).split())[:200]}")
            continue
        if step.optional:
            cur.execute("SAVEPOINT pagila_keep")
        try:
            cur.execute(step.sql)
        except psycopg2.errors.LockNotAvailable:
            raise  # the switch tries again without its locks, waiting longer
        except (
            psycopg2.errors.UndefinedTable,
            psycopg2.errors.UndefinedObject,
            psycopg2.errors.UndefinedFunction,
            psycopg2.errors.UndefinedColumn,
            psycopg2.errors.InvalidSchemaName,
        ) as exc:
            if not step.optional:
                raise _failed(step, when, exc) from exc
            cur.execute("ROLLBACK TO SAVEPOINT pagila_keep")
            skipped.append(step.what)
            continue
        except psycopg2.Error as exc:
            raise _failed(step, when, exc) from exc
        if step.optional:
            cur.execute("RELEASE SAVEPOINT pagila_keep")
    return skipped


def _failed(step: Step, when: str, exc: psycopg2.Error) -> ReplicationError:
    message = " ".join((exc.diag.message_primary or str(exc)).split())
    return ReplicationError(f"keeping {step.what} {when} failed: {message}")


def save(cur: Cursor, run_id: str, kept: KeepPlan) -> None:
    """Keep a run's plan on the target (in the transaction that starts carrying it out)."""
    support.save_kept(cur, run_id, kept.to_json())


def load(cur: Cursor, run_id: str) -> KeepPlan | None:
    """The plan :func:`save` kept for the run, or None."""
    saved = support.kept(cur, run_id)
    return KeepPlan.from_json(saved) if saved is not None else None


def put_back(cur: Cursor, kept: KeepPlan) -> list[str]:
    """Make again, as far as the target allows, what an in-place run took down before its
    reset (its errback, or the next run); returns what could not be made, with why."""
    if kept.swap:
        return []  # a swap never took anything down: what it built ahead went with its staging
    return run_steps(cur, kept.build + kept.switch, "after a failed run", best_effort=True)


def pending(cur: Cursor, run_id: str) -> list[tuple[str, KeepPlan]]:
    """Plans of other runs still on the target (runs that ended without switching)."""
    return [(r, KeepPlan.from_json(p)) for r, p in support.pending_kept(cur, run_id)]


def forget(cur: Cursor, run_id: str) -> None:
    """Let the run's plan go (it switched, or what it took down is back)."""
    support.forget_kept(cur, run_id)


def record(cur: Cursor, schemas: Iterable[str], manifest: Manifest) -> None:
    """The switch's record of what the project now owns in ``schemas``."""
    support.write_manifest(cur, schemas, manifest.rows())


def outside_dependents(cur: Cursor, *schemas: str) -> list[str]:
    """What outside ``schemas`` and the project's own schemas dropping their objects with
    ``CASCADE`` would take, but for the objects a run built ahead under a temporary name."""
    ignore = project_schemas(cur)
    with catalog_path(cur):
        cur.execute(sqlfiles.query("keep_closure"), {"schemas": list(schemas), "ignore": ignore})
        rows = cur.fetchall()
    return [f"{r[3]} {r[4]}" for r in rows if TEMP_PREFIX not in r[4]]
