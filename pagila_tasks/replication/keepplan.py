"""Planning what a run keeps of the target's users' work: pure, no server.

From what :mod:`.keep` read on the target (a :class:`Survey`) and what the project
owns there (a :class:`Manifest`), :func:`plan` decides which statements run when: before an
in-place reset, on the new copy before the switch, in the switch's transaction; and what cannot
be kept, for the refusal. See :mod:`.keep` for why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from pagila_tasks.base.errors import UsageError

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
    on: tuple[str, ...] = ()
    """For an object on a relation: its schema's name as written in ``create_sql``, and the
    relation's (quoted as PostgreSQL quotes them)."""


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
        """(schema, kind, key, value) rows, as :func:`pagila_tasks.pg.support.write_manifest`
        records them."""
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
    on: tuple[str, ...] = ()
    """See :attr:`Own.on`: lets an index be built apart, on the build schema by name."""


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
        steps = {
            k: tuple(Step(**(s | {"on": tuple(s["on"])})) for s in data[k])
            for k in ("detach", "build", "switch")
        }
        return cls(
            **steps,
            lost=tuple(data["lost"]),
            notes=tuple(data["notes"]),
            kept=tuple(data["kept"]),
            swap=bool(data["swap"]),
        )


def temp_name(token: str, index: int) -> str:
    return f"{TEMP_PREFIX}{token}_{index}"


def plan(
    s: Survey,
    manifest: Manifest,
    swap: bool,
    token: str,
    replaceable: frozenset[str] = frozenset(),
    incoming: Manifest | None = None,
) -> KeepPlan:
    """What to run, and when, to keep what the target's users built (pure). What is inside the
    ``replaceable`` schemas (``--overwrite-target`` of a schema no run put there) is let go; an
    object someone made that the source now has too (``incoming``: the same name) gives way to
    the source's, with a note."""
    ours = manifest.objects
    extras = [o for o in s.objects if o.key not in ours and o.schema not in replaceable]
    taken = {o.key for o in extras if incoming is not None and o.key in incoming.objects}
    extras = [o for o in extras if o.key not in taken]
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
    build = [Step(o.key, o.create_sql or "", on=o.on) for o in inside_kept]
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
    notes = [
        f"{key} made on the target gives way to the source's of that name" for key in sorted(taken)
    ]
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


def apart(steps: Iterable[Step], builds: dict[str, str]) -> tuple[list[str], list[Step]]:
    """Indexes someone added to replicated tables, rewritten to name the table in its build
    schema (``builds``: quoted live schema -> build schema), so they can be built in sessions of
    their own, side by side, like the dump's own indexes; and the steps that must run as live.
    An index naming anything else of a replicated schema (a function in its expression) stays
    as live: only its own table is rewritten, as in :func:`.schema.split_post_data`.
    """
    alone: list[str] = []
    rest: list[Step] = []
    for step in steps:
        schema, rel = step.on if len(step.on) == 2 else ("", "")
        build = builds.get(schema)
        own = f" ON {schema}.{rel} "
        if step.what.startswith("index ") and build and own in step.sql:
            text = step.sql.replace(own, f" ON {build}.{rel} ", 1)
            if f"{schema}." not in text:
                alone.append(text)
                continue
        rest.append(step)
    return alone, rest


def refusal(lost: Iterable[str], how: str) -> str:
    """One line naming what a run would lose, and the flag that accepts the loss."""
    items = list(lost)
    shown = "; ".join(items[:20]) + (f"; and {len(items) - 20} more" if len(items) > 20 else "")
    return (
        f"the target holds {len(items)} object(s) the project did not create that this run "
        f"cannot keep ({how}): {shown}; pass --drop-dependents (or set "
        "PAGILA_DROP_DEPENDENTS=1) to let them go"
    )


def how_lost(swap: bool) -> str:
    """The statement that would lose what a run cannot keep, for its refusal."""
    if swap:
        return "the switch's DROP SCHEMA ... CASCADE of the previous copy would drop them"
    return "the in-place reset's DROP ... CASCADE of the replicated objects would drop them"


def check(kept: KeepPlan, drop_dependents: bool, how: str) -> None:
    """Refuse a plan that loses something, unless the operator accepted the loss."""
    if kept.lost and not drop_dependents:
        raise UsageError(refusal(kept.lost, how))
