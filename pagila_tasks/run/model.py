"""What a run is, as types: its options, its state, what prepare decided, how far each unit got.

The phases hand these to each other through the run record (:mod:`pagila_tasks.run.record`, the
only module that knows how they are stored); nobody else reads a record by field name. Pure: no
Redis, no database, so the shapes and their JSON forms are tested alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

from pagila_tasks.config import Settings
from pagila_tasks.run.changeplan import Change
from pagila_tasks.run.plan import Unit

Kind = Literal["load", "replicate"]


class RunState(StrEnum):
    """Where a run is; the last four are terminal (a run reaches one exactly once)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.SKIPPED})


@dataclass(frozen=True)
class LoadOptions:
    """What a load is told: its message's arguments beside the run id, recorded at submit."""

    force: bool = False
    sql_dir: str | None = None
    force_reset: bool = False

    def as_kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Resolved:
    """A replication's options with the workers' settings filled in where the run left them."""

    tables: tuple[str, ...] | None
    schemas: tuple[str, ...]
    overwrite: bool
    drop_dependents: bool
    full: bool = False
    max_rate: int | None = None


@dataclass(frozen=True)
class ReplicateOptions:
    """What a replication is told (``None`` / ``False``: the workers' own setting applies)."""

    tables: tuple[str, ...] | None = None
    schemas: tuple[str, ...] | None = None
    overwrite: bool = False
    drop_dependents: bool = False
    full: bool = False
    """Copy everything, without first proving the live copy unchanged
    (:mod:`pagila_tasks.replication.proof`)."""
    max_rate: int | None = None
    """Bytes per second the whole run may read from the source (``--max-rate``)."""

    def __post_init__(self) -> None:
        for name in ("tables", "schemas"):  # JSON brings lists: one form, so records compare
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "tables": list(self.tables) if self.tables is not None else None,
            "schemas": list(self.schemas) if self.schemas is not None else None,
            "overwrite": self.overwrite,
            "drop_dependents": self.drop_dependents,
            "full": self.full,
            "max_rate": self.max_rate,
        }

    def resolve(self, s: Settings) -> Resolved:
        """The one place a run's options fall back to the workers' settings."""
        return Resolved(
            tables=self.tables,
            schemas=self.schemas or s.schemas,
            overwrite=self.overwrite or s.overwrite_target,
            drop_dependents=self.drop_dependents or s.drop_dependents,
            full=self.full,
            max_rate=self.max_rate,
        )


RunOptions = LoadOptions | ReplicateOptions


def options_for(kind: str, data: dict[str, Any] | None) -> RunOptions:
    """The typed options of a run of ``kind`` from their JSON form (unknown keys refused)."""
    cls: type[LoadOptions] | type[ReplicateOptions] = (
        LoadOptions if kind == "load" else ReplicateOptions
    )
    known = {f.name for f in fields(cls)}
    extra = set(data or {}) - known
    if extra:
        raise ValueError(f"unknown {kind} options: {', '.join(sorted(extra))}")
    return cls(**(data or {}))


@dataclass(frozen=True)
class SnapshotInfo:
    """The run's exported source snapshot, as its holder process published it."""

    id: str | None = None
    holder: str | None = None
    error: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class UnitProgress:
    """How far one unit of a run got (written by the worker doing it)."""

    state: str = "queued"
    table: str = "?"
    rows: int | None = None
    bytes: int | None = None
    spilled: bool = False
    seconds: float = 0.0
    worker: str | None = None
    error: str | None = None
    attempt: int | None = None
    updated_at: str | None = None
    origin: str | None = None
    """A reused unit's: the run that copied it into the staging copy this run resumed."""
    pid: int | None = None
    """The worker process that copied it (a worker node runs several): the report's lane."""
    started_at: float | None = None
    ended_at: float | None = None
    """Epoch seconds of the copy's start and commit, for the report's timeline."""
    read: int | None = None
    written: int | None = None
    read_seconds: float | None = None
    """Bytes of the COPY stream read from the source and written to the target so far: they
    advance during the copy (at least once a second), for the byte progress and its ETA."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitProgress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ReplicationPlan:
    """What prepare decided, for the copies and the callback: where each schema is built, the
    units, the tables to verify, the foreign keys a ``--tables`` run dropped, server versions."""

    schemas: tuple[str, ...]
    swap: bool
    targets: dict[str, str]
    units: tuple[Unit, ...]
    table_keys: tuple[tuple[str, str], ...]
    foreign_keys: tuple[tuple[Any, ...], ...] = ()
    subset: bool = False
    large_objects: int = 0
    source_version: int = 0
    target_version: int = 0
    prepared_at: float = 0.0
    unchanged: bool = False
    """The live copy was proven to hold the source at the snapshot: nothing to copy or build."""
    reason: str = ""
    """Why the run copies what it copies (or nothing), for its first line and the ledger."""
    proven: tuple[tuple[str, int, int, str | None, str | None], ...] = ()
    """An unchanged run's verdicts: table, source rows, target rows, both checksums."""
    fingerprint: str = ""
    """The source schema's fingerprint, recorded after the switch for the next run's proof."""
    reused: tuple[str, ...] = ()
    """Units of a resumed staging copy proven equal at this snapshot: not copied again."""
    expected: dict[str, int] = field(default_factory=dict)
    """Per unit, the bytes its COPY stream is expected to carry (the last run's bytes for the
    same unit, else the catalog's size): the progress bar's total before the copies end."""
    max_rate: int | None = None
    """The cap on bytes per second read from the source by the whole run (``--max-rate``)."""
    unit_overhead: float = 0.0
    """Seconds a copy costs beyond its bytes, measured on the last run (the ETA's prior)."""
    applies: bool = False
    """The rows that differ are applied to the live copy in place (:mod:`.changeplan`):
    ``changes`` are the tables, ``proven`` every table's verdict from the proof."""
    changes: tuple[Change, ...] = ()
    compared_bytes: int = 0
    """Bytes of keys and row hashes the comparison read from the source (``applies``)."""
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per table, the post-data statements the copy that completes it builds at once (a swap's;
    see :mod:`pagila_tasks.replication.indexes`)."""
    early_keys: tuple[tuple[str, str, str, str], ...] = ()
    """The foreign keys the copies add as soon as both tables are built: (table, referenced
    table, name, statement) (see :mod:`pagila_tasks.replication.earlykeys`)."""
    reused_measures: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    """Per table every unit of which was reused: its count and checksum, proven the same on
    both sides at this snapshot by prepare; verification takes them (no second read)."""
    measured_at: int | None = None
    """The xmin of the target snapshot the proof measured the live tables in (``applies``)."""
    origins: tuple[str | None, str | None] = (None, None)
    """Where the source and (by the proof) the target were read: recorded with the measures
    (:mod:`pagila_tasks.run.recorded`)."""
    horizon: int | None = None
    """The run snapshot's xmin (xid8), recorded when its copy goes live or is proven equal, for
    the next run's hint of which source rows may have changed (``None``: not read)."""

    def builds_early(self, table: str) -> bool:
        """Whether the copy that completes ``table`` builds something at once (indexes, keys)."""
        return table in self.indexes or any(table in k[:2] for k in self.early_keys)

    @property
    def tables(self) -> list[str]:
        """The names of the tables the units fill (or the proof kept), for people and the ledger."""
        return sorted({u.table_name for u in self.units} | {p[0] for p in self.proven})

    def unit(self, args: object) -> Unit | None:
        """The planned unit whose message arguments are exactly ``args``, else None."""
        if not isinstance(args, dict):
            return None
        return next((u for u in self.units if u.as_args() == args), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "schemas": list(self.schemas),
            "swap": self.swap,
            "targets": dict(self.targets),
            "units": [u.as_args() for u in self.units],
            "table_keys": [list(k) for k in self.table_keys],
            "foreign_keys": [list(fk) for fk in self.foreign_keys],
            "subset": self.subset,
            "large_objects": self.large_objects,
            "source_version": self.source_version,
            "target_version": self.target_version,
            "prepared_at": self.prepared_at,
            "unchanged": self.unchanged,
            "reason": self.reason,
            "proven": [list(p) for p in self.proven],
            "fingerprint": self.fingerprint,
            "reused": list(self.reused),
            "expected": dict(self.expected),
            "max_rate": self.max_rate,
            "unit_overhead": self.unit_overhead,
            "applies": self.applies,
            "changes": [c.as_json() for c in self.changes],
            "compared_bytes": self.compared_bytes,
            "indexes": {k: list(v) for k, v in self.indexes.items()},
            "early_keys": [list(k) for k in self.early_keys],
            "horizon": self.horizon,
            "measured_at": self.measured_at,
            "origins": list(self.origins),
            "reused_measures": {k: list(v) for k, v in self.reused_measures.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicationPlan:
        return cls(
            schemas=tuple(data["schemas"]),
            swap=bool(data["swap"]),
            targets=dict(data["targets"]),
            units=tuple(Unit.from_args(u) for u in data["units"]),
            table_keys=tuple((str(a), str(b)) for a, b in data["table_keys"]),
            foreign_keys=tuple(tuple(fk) for fk in data.get("foreign_keys", [])),
            subset=bool(data.get("subset")),
            large_objects=int(data.get("large_objects") or 0),
            source_version=int(data.get("source_version") or 0),
            target_version=int(data.get("target_version") or 0),
            prepared_at=float(data.get("prepared_at") or 0.0),
            unchanged=bool(data.get("unchanged")),
            reason=str(data.get("reason") or ""),
            proven=tuple(
                (str(t), int(sr), int(tr), sc, tc) for t, sr, tr, sc, tc in data.get("proven", [])
            ),
            fingerprint=str(data.get("fingerprint") or ""),
            reused=tuple(str(n) for n in data.get("reused", [])),
            expected={str(k): int(v) for k, v in (data.get("expected") or {}).items()},
            max_rate=int(data["max_rate"]) if data.get("max_rate") else None,
            unit_overhead=float(data.get("unit_overhead") or 0.0),
            applies=bool(data.get("applies")),
            changes=tuple(Change.from_json(c) for c in data.get("changes", [])),
            compared_bytes=int(data.get("compared_bytes") or 0),
            indexes={str(k): tuple(v) for k, v in (data.get("indexes") or {}).items()},
            early_keys=tuple(
                (str(a), str(b), str(c), str(d)) for a, b, c, d in data.get("early_keys") or []
            ),
            horizon=int(data["horizon"]) if data.get("horizon") is not None else None,
            measured_at=int(data["measured_at"]) if data.get("measured_at") is not None else None,
            origins=tuple(data.get("origins") or (None, None)),  # type: ignore[arg-type]
            reused_measures={
                str(k): (int(v[0]), v[1]) for k, v in (data.get("reused_measures") or {}).items()
            },
        )


@dataclass(frozen=True)
class Step:
    """One step of a run's control tasks (prepare, the callback) as its STEP line said it: the
    report's bars between one step's start and the next one's."""

    phase: str
    text: str
    at: float
    worker: str | None = None
    pid: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Switch:
    """When a replication's copy went live, how long the switch held, what the target is now."""

    target_state: str | None = None
    switched_at: str | None = None
    switch_ms: float | None = None


@dataclass(frozen=True)
class Keeping:
    """What a replication keeps of the target's users' work, lets go, and could not carry."""

    keeps: tuple[str, ...] = ()
    drops: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    not_put_back: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableTotal:
    """One table's units summed, for the audit detail and the summary table."""

    rows: int = 0
    bytes: int = 0
    spilled: bool = False
    workers: tuple[str, ...] = ()
    seconds: float = 0.0
    states: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    """One run as its record holds it, read at one moment (reading changes nothing)."""

    run_id: str
    kind: str
    state: RunState
    deadline: float = float("inf")
    error: str | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    later_errors: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, Any] | None = None
    scheduled: bool = False
    then: str | None = None
    cancel_requested: bool = False
    units: dict[str, UnitProgress] = field(default_factory=dict)
    plan: ReplicationPlan | None = None
    snapshot: SnapshotInfo = SnapshotInfo()
    copying_at: float | None = None
    phase: str | None = None
    finish_started_at: str | None = None
    keeping: Keeping = Keeping()
    verification: tuple[dict[str, Any], ...] = ()
    sequences: int | None = None
    switch: Switch = Switch()
    worker: str | None = None
    files: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    steps: tuple[Step, ...] = ()

    @property
    def typed_options(self) -> RunOptions:
        """The options the submitter recorded, typed (see :func:`options_for`)."""
        return options_for(self.kind, self.options)

    @property
    def target_state(self) -> str:
        """What a replication left on the target: as its switch said, else (it failed) whether
        its in-place reset had begun."""
        if self.switch.target_state:
            return self.switch.target_state
        if self.plan is not None and not self.plan.swap:
            return "partly replaced"
        return "unchanged"

    def _by_table(self) -> dict[str, list[UnitProgress]]:
        grouped: dict[str, list[UnitProgress]] = {}
        for u in self.units.values():
            grouped.setdefault(u.table, []).append(u)
        return grouped

    def table_totals(self) -> dict[str, TableTotal]:
        """Per table, its units summed (a split table has several units; people and the audit
        detail speak per table)."""
        return {
            table: TableTotal(
                rows=sum(int(u.rows or 0) for u in us),
                bytes=sum(int(u.bytes or 0) for u in us),
                spilled=any(u.spilled for u in us),
                workers=tuple(sorted({str(u.worker) for u in us if u.worker})),
                seconds=round(sum(float(u.seconds or 0) for u in us), 3),
                states=tuple(u.state for u in us),
            )
            for table, us in self._by_table().items()
        }

    def how_built(self) -> dict[str, str]:
        """Per table, how the new copy got its rows: ``copied``, ``reused from RUN`` (a resumed
        staging copy's), or ``ranges copied N/M`` and the rest reused."""
        hows = {}
        for table, us in self._by_table().items():
            reused = [u for u in us if u.state == "reused"]
            origins = ", ".join(sorted({str(u.origin) for u in reused}))
            if not reused:
                hows[table] = "copied"
            elif len(reused) == len(us):
                hows[table] = f"reused from {origins}"
            else:
                hows[table] = (
                    f"ranges copied {len(us) - len(reused)}/{len(us)}, rest from {origins}"
                )
        return hows

    def summary(self) -> dict[str, Any]:
        """The run as ``pagila-submit status --json`` prints it (beside its progress)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": self.kind,
            "state": str(self.state),
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "result": self.result,
            "verification": list(self.verification) or None,
            "tables": self.plan.tables if self.plan else None,
            "plan": (
                {"units": len(self.plan.units), "unchanged": self.plan.unchanged}
                | {"reason": self.plan.reason, "applies": self.plan.applies}
                | {"compared_bytes": self.plan.compared_bytes}
                if self.plan
                else None
            ),
            "seen": self.seen,
            "options": self.options,
            "target_state": self.switch.target_state,
            "switched_at": self.switch.switched_at,
            "switch_ms": self.switch.switch_ms,
            "later_errors": list(self.later_errors) or None,
        }
        out = {k: v for k, v in out.items() if v is not None}
        out["units"] = {name: u.as_json() for name, u in self.units.items()}
        return out

    def as_json(self) -> dict[str, Any]:
        """Everything the record holds about the run, for tests and debugging."""
        return json.loads(json.dumps(_plain(self), default=str))


def _plain(value: Any) -> Any:
    if isinstance(value, ReplicationPlan):
        return value.as_json()
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
