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
kept in ``pagila_support.kept_objects``, so a failed run's errback, or the next run, puts them
back) and made again once the new copy is built.

What cannot be made again (a table whose column uses a replicated type, a table someone created
inside a replicated schema) is named before any lock and refused unless ``--drop-dependents``.
The trap this module exists for: ``DROP SCHEMA ... CASCADE`` of a previous copy silently takes
every dependent elsewhere with it; :func:`outside_dependents` lets the dropper refuse instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pagila_tasks import sqlfiles
from pagila_tasks.errors import ReplicationError, UsageError

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

SUPPORT = "pagila_support"
"""The bookkeeping schema (see :mod:`pagila_tasks.audit`)."""
MARK = "\x01"
"""Stands for the temporary name in a statement that builds an object before the switch."""
TEMP_PREFIX = "pagila_keep_"
"""Objects a run builds ahead under a temporary name start so (and nothing else of ours does)."""
SUB_OBJECTS = ("index ", "table constraint ", "trigger ", "policy ", "rule ")
"""Keys of objects that hang on a relation: kept when someone adds them to a replicated table."""


@dataclass(frozen=True)
class Dependent:
    """An object outside the replicated schemas that depends on them (one row of
    ``sql/keep_closure.sql``); ``parents`` are the keys (``classid:objid``) it depends on."""

    key: str
    parents: tuple[str, ...]
    depth: int
    type: str
    identity: str
    kind: str
    create_sql: str | None
    drop_sql: str | None
    populated: bool
    prebuild_sql: str | None
    swap_in_sql: str | None

    @property
    def label(self) -> str:
        return f"{self.type} {self.identity}"


@dataclass(frozen=True)
class Own:
    """An object of a replicated schema (one row of ``sql/keep_objects.sql``)."""

    key: str
    ref: str
    schema: str
    parent_key: str | None
    create_sql: str | None


@dataclass(frozen=True)
class Annotation:
    """A privilege, owner, comment or label, as the statement that adds it again."""

    kind: str
    target: str
    statement: str
    value: str | None
    inside: bool
    schema: str
    unit: str | None


@dataclass(frozen=True)
class Manifest:
    """What the project put in the replicated schemas: object keys and the source's comments."""

    objects: frozenset[str]
    comments: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    """The schema of each object key and comment target."""

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(schema, kind, key, value) rows for ``pagila_support.replication_manifest``."""
        out = [(self.where.get(k, ""), "object", k, "") for k in sorted(self.objects)]
        return out + [
            (self.where.get(t, ""), "comment", t, v) for t, v in sorted(self.comments.items())
        ]


@dataclass(frozen=True)
class Survey:
    """What the target's replicated schemas hold and what elsewhere depends on them."""

    schemas: tuple[str, ...]
    dependents: tuple[Dependent, ...]
    objects: tuple[Own, ...]
    annotations: tuple[Annotation, ...]


@dataclass(frozen=True)
class Step:
    """One statement of a plan; ``optional`` ones are skipped when their object is gone."""

    what: str
    sql: str
    optional: bool = False


@dataclass(frozen=True)
class KeepPlan:
    """Statements that keep what the target's users built, by when they run.

    ``detach``: in place, before the reset; ``build``: on the new copy (as live) before the
    switch; ``switch``: in the switch's transaction. ``lost``: what cannot be kept, each with
    why; ``notes``: what is kept only in part (an owner the run's user may not give objects to).
    """

    detach: tuple[Step, ...] = ()
    build: tuple[Step, ...] = ()
    switch: tuple[Step, ...] = ()
    lost: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    swap: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KeepPlan:
        data = json.loads(text)
        steps = {k: tuple(Step(**s) for s in data[k]) for k in ("detach", "build", "switch")}
        return cls(
            **steps,
            lost=tuple(data["lost"]),
            notes=tuple(data["notes"]),
            kept=tuple(data["kept"]),
            swap=bool(data["swap"]),
        )


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


def _exists(cur: Cursor, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SUPPORT}.{table}",))
    return bool(cur.fetchone()[0])


def project_schemas(cur: Cursor) -> list[str]:
    """Schemas whose objects are the project's own: the bookkeeping schema and every staging or
    previous copy a run registered."""
    if not _exists(cur, "replication_schemas"):
        return [SUPPORT]
    cur.execute("SELECT name FROM pagila_support.replication_schemas")
    return [SUPPORT] + [name for (name,) in cur.fetchall()]


def assess(
    target: Cursor,
    source: Cursor | Manifest,
    schemas: Iterable[str],
    swap: bool,
    token: str,
    replaceable: frozenset[str] = frozenset(),
) -> KeepPlan:
    """Read what the target's users built on and around ``schemas`` and plan to keep it: what
    the project owns is the last switch's record, else (a target an earlier version replicated,
    or a first run) what the source holds (read now on ``source``, or already read)."""
    schemas = tuple(schemas)
    with catalog_path(target):
        found = survey(target, schemas, project_schemas(target))
        manifest = recorded_manifest(target, schemas)
    if manifest is None and isinstance(source, Manifest):
        manifest = source
    elif manifest is None:
        with catalog_path(source):
            manifest = source_manifest(source, schemas)
    return plan(found, manifest, swap, token, replaceable)


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
    return tuple(Own(*r) for r in cur.fetchall())


def annotations(cur: Cursor, schemas: Iterable[str], units: list[str]) -> tuple[Annotation, ...]:
    cur.execute(sqlfiles.query("keep_annotations"), {"schemas": list(schemas), "units": units})
    return tuple(Annotation(*r) for r in cur.fetchall())


def source_manifest(cur: Cursor, schemas: Iterable[str]) -> Manifest:
    """What a copy of ``schemas`` holds (read on the source, in the run's snapshot)."""
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
    if not _exists(cur, "replication_manifest"):
        return None
    cur.execute(sqlfiles.query("manifest_read"), {"schemas": list(schemas)})
    rows = cur.fetchall()
    if not rows:
        return None
    objs = frozenset(key for kind, key, _ in rows if kind == "object")
    comments = {key: value for kind, key, value in rows if kind == "comment"}
    return Manifest(objs, comments)


# -- planning (pure) ---------------------------------------------------------------------------


def temp_name(token: str, index: int) -> str:
    return f"{TEMP_PREFIX}{token}_{index}"


def plan(
    s: Survey,
    manifest: Manifest,
    swap: bool,
    token: str,
    replaceable: frozenset[str] = frozenset(),
) -> KeepPlan:
    """What to run, and when, to keep what the target's users built (pure). What is inside the
    ``replaceable`` schemas (``--overwrite-target`` of a schema no run put there) is let go."""
    ours = manifest.objects
    extras = [o for o in s.objects if o.key not in ours and o.schema not in replaceable]
    extra_keys = {o.key for o in extras}
    inside_kept = [
        o for o in extras if o.key.startswith(SUB_OBJECTS) and o.parent_key in ours and o.create_sql
    ]
    kept_refs = {o.ref for o in inside_kept}
    lost_inside = [
        o
        for o in extras
        if o.ref not in kept_refs and not (o.parent_key and o.parent_key in extra_keys)
    ]
    lost_refs = {o.ref for o in extras if o.ref not in kept_refs}
    lost_keys: set[str] = set()
    for d in sorted(s.dependents, key=lambda d: d.depth):
        if d.kind == "other" or any(p in lost_refs or p in lost_keys for p in d.parents):
            lost_keys.add(d.key)
    kept = [d for d in s.dependents if d.key not in lost_keys]
    # Built ahead only what reads nothing but the replicated schemas (depth 1): something that
    # reads another dependent would bind to the old one, which the switch drops.
    temps = {
        d.key: temp_name(token, i) for i, d in enumerate(kept) if d.prebuild_sql and d.depth == 1
    }
    refresh = [
        Step(d.label, f"REFRESH MATERIALIZED VIEW {d.identity}")
        for d in kept
        if d.kind == "matview" and d.populated and (d.key not in temps or not swap)
    ]

    lost = tuple(
        [f"{o.key} (made on the target inside a replicated schema)" for o in lost_inside]
        + [
            f"{d.label} (depends on the replicated schemas and cannot be made again)"
            for d in s.dependents
            if d.key in lost_keys
        ]
    )
    build = [Step(o.key, o.create_sql or "") for o in inside_kept]
    drops = [Step(d.label, d.drop_sql or "") for d in sorted(kept, key=lambda d: -d.depth)]
    if swap:
        build += [
            Step(d.label, (d.prebuild_sql or "").replace(MARK, temps[d.key]))
            for d in kept
            if d.key in temps
        ]
        makes = [
            Step(d.label, (d.swap_in_sql or "").replace(MARK, temps[d.key]))
            if d.key in temps
            else Step(d.label, d.create_sql or "")
            for d in kept
        ]
        detach: list[Step] = []
        switch = drops + makes + refresh
    else:
        detach = drops
        build += [Step(d.label, d.create_sql or "") for d in kept] + refresh
        switch = []
    kept_units = {d.key for d in kept}
    notes = []
    for a in s.annotations:
        if not a.inside and a.unit not in kept_units:
            continue
        if a.kind == "owner-lost":
            notes.append(f"{a.target} stays owned by the run's user, not {a.value}")
            continue
        if a.kind == "comment" and a.inside and manifest.comments.get(a.target) == a.value:
            continue  # the source's own comment: the new copy has it (or the source's new one)
        switch.append(Step(a.target, a.statement, optional=a.inside))
    return KeepPlan(
        tuple(detach),
        tuple(build),
        tuple(switch),
        lost,
        tuple(notes),
        tuple([o.key for o in inside_kept] + [d.label for d in kept]),
        swap,
    )


def refusal(lost: Iterable[str], how: str) -> str:
    """One line naming what a run would lose, and the flag that accepts the loss."""
    items = list(lost)
    shown = "; ".join(items[:20]) + (f"; and {len(items) - 20} more" if len(items) > 20 else "")
    return (
        f"the target holds {len(items)} object(s) the project did not create that this run "
        f"cannot keep ({how}): {shown}; pass --drop-dependents (or set "
        "PAGILA_DROP_DEPENDENTS=1) to let them go"
    )


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
    cur.execute(sqlfiles.query("kept_save"), {"run_id": run_id, "plan": kept.to_json()})


def load(cur: Cursor, run_id: str) -> KeepPlan | None:
    cur.execute("SELECT plan FROM pagila_support.kept_objects WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return KeepPlan.from_json(row[0]) if row else None


def put_back(cur: Cursor, kept: KeepPlan) -> list[str]:
    """Make again, as far as the target allows, what an in-place run took down before its
    reset (its errback, or the next run); returns what could not be made, with why."""
    if kept.swap:
        return []  # a swap never took anything down: what it built ahead went with its staging
    return run_steps(cur, kept.build + kept.switch, "after a failed run", best_effort=True)


def pending(cur: Cursor, run_id: str) -> list[tuple[str, KeepPlan]]:
    """Plans of other runs still on the target (runs that ended without switching)."""
    cur.execute(
        "SELECT run_id, plan FROM pagila_support.kept_objects WHERE run_id <> %s "
        "ORDER BY created_at",
        (run_id,),
    )
    return [(r, KeepPlan.from_json(p)) for r, p in cur.fetchall()]


def forget(cur: Cursor, run_id: str) -> None:
    cur.execute("DELETE FROM pagila_support.kept_objects WHERE run_id = %s", (run_id,))


def record(cur: Cursor, schemas: Iterable[str], manifest: Manifest) -> None:
    """The switch's record of what the project now owns in ``schemas``."""
    schemas = list(schemas)
    rows = manifest.rows()
    cur.execute(
        sqlfiles.query("manifest_write"),
        {
            "schemas": schemas,
            "schema_names": [r[0] for r in rows],
            "kinds": [r[1] for r in rows],
            "keys": [r[2] for r in rows],
            "values": [r[3] for r in rows],
        },
    )


def outside_dependents(cur: Cursor, schema: str) -> list[str]:
    """What outside ``schema`` and the project's own schemas a ``DROP SCHEMA ... CASCADE`` of
    it would take, but for the objects a run built ahead under a temporary name."""
    ignore = project_schemas(cur)
    with catalog_path(cur):
        cur.execute(sqlfiles.query("keep_closure"), {"schemas": [schema], "ignore": ignore})
        rows = cur.fetchall()
    return [f"{r[3]} {r[4]}" for r in rows if TEMP_PREFIX not in r[4]]


def how_lost(swap: bool) -> str:
    """The statement that would lose what a run cannot keep, for its refusal."""
    if swap:
        return "the switch's DROP SCHEMA ... CASCADE of the previous copy would drop them"
    return "the in-place reset's DROP ... CASCADE of the replicated objects would drop them"


def check(kept: KeepPlan, drop_dependents: bool, how: str) -> None:
    """Refuse a plan that loses something, unless the operator accepted the loss."""
    if kept.lost and not drop_dependents:
        raise UsageError(refusal(kept.lost, how))
