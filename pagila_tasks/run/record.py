"""The run record in Redis: the one module that knows its keys and field names.

One hash per run (``pagila:run:<id>``): the run's state and facts, one JSON field per unit of
work (``unit:<name>``); a capped list (``pagila:runs``) of recent run ids; beside the hash, the
run's task ids (``...:tasks``) and its schema dump (``...:schema``). Everyone else reads a
:class:`~pagila_tasks.run.model.Run` and writes through the typed methods below. Timings and
worker names live here, never in task return values, which must stay deterministic for chord
counting. Reading changes nothing: ending a late run is :mod:`pagila_tasks.run.lifecycle`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import redis

from pagila_tasks.run.model import (
    TERMINAL,
    Keeping,
    ReplicationPlan,
    Run,
    RunOptions,
    RunState,
    SnapshotInfo,
    Step,
    Switch,
    UnitProgress,
)

RUNS_KEY = "pagila:runs"
RECORD_TTL = 30 * 24 * 3600
_PLAIN = frozenset(
    (
        *("run_id", "kind", "state", "submitted_at", "started_at", "finished_at", "error"),
        *("deadline", "snapshot", "snapshot_holder", "snapshot_error", "snapshot_pid"),
        *("copying_at", "prepared_at"),
    )
)
"""Fields stored as plain strings (the rest are JSON)."""

_UNLESS_ENDED = (
    "local s = redis.call('HGET', KEYS[1], 'state')\n"
    f"if {' or '.join(f's == {str(state)!r}' for state in sorted(TERMINAL))} then return 0 end\n"
)
"""Lua: leave a run that reached a terminal state alone (the scripts below go on otherwise)."""

_SET_STATE = _UNLESS_ENDED + "redis.call('HSET', KEYS[1], 'state', ARGV[1]) return 1"
_FINISH_ONCE = (
    _UNLESS_ENDED + "redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at', ARGV[2])\n"
    "if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[1])\n"
    "return 1"
)
_NOTE_ERROR = (
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local first = redis.call('HGET', KEYS[1], 'error')\n"
    "if not first then redis.call('HSET', KEYS[1], 'error', ARGV[1]) return 1 end\n"
    "if first == ARGV[1] then return 1 end\n"
    "local later = cjson.decode(redis.call('HGET', KEYS[1], 'later_errors') or '[]')\n"
    "for _, e in ipairs(later) do if e == ARGV[1] then return 1 end end\n"
    "table.insert(later, ARGV[1])\n"
    "redis.call('HSET', KEYS[1], 'later_errors', cjson.encode(later))\n"
    "return 1"
)


_ADD_STEP = (
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local steps = cjson.decode(redis.call('HGET', KEYS[1], 'steps') or '[]')\n"
    "table.insert(steps, cjson.decode(ARGV[1]))\n"
    "redis.call('HSET', KEYS[1], 'steps', cjson.encode(steps))\n"
    "return 1"
)
"""Lua: append one step to a known run's list (two control tasks may write at once)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def run_key(run_id: str) -> str:
    """Redis key of one run's record."""
    return f"pagila:run:{run_id}"


def ended_channel(run_id: str) -> str:
    """The Redis channel a run's terminal state is published on when it is set: who follows
    the run wakes at once instead of at its next read."""
    return f"{run_key(run_id)}:ended"


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    fields: dict[str, Any] = {"units": {}}
    for k, v in raw.items():
        key, value = k.decode(), v.decode()
        if key.startswith("unit:"):
            fields["units"][key[5:]] = UnitProgress.from_json(json.loads(value))
        elif key in _PLAIN:
            fields[key] = value
        else:
            try:
                fields[key] = json.loads(value)
            except ValueError:
                fields[key] = value
    return fields


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _number(value: Any) -> float | None:
    return float(value) if value not in (None, "") else None


def _run(f: dict[str, Any]) -> Run:
    """A :class:`Run` from the decoded fields (records of older versions read alike)."""
    plan = f.get("plan")
    return Run(
        run_id=str(f.get("run_id", "?")),
        kind=str(f.get("kind", "?")),
        state=RunState(f.get("state", "queued")),
        submitted_at=f.get("submitted_at"),
        started_at=f.get("started_at"),
        finished_at=f.get("finished_at"),
        deadline=_number(f.get("deadline")) or float("inf"),
        error=f.get("error"),
        later_errors=_tuple(f.get("later_errors")),
        options=f.get("options") or {},
        seen=f.get("seen"),
        scheduled=bool(f.get("scheduled")),
        then=f.get("then"),
        cancel_requested=bool(f.get("cancel_requested")),
        units=f["units"],
        plan=ReplicationPlan.from_json(plan) if isinstance(plan, dict) else None,
        snapshot=SnapshotInfo(
            f.get("snapshot"),
            f.get("snapshot_holder"),
            f.get("snapshot_error"),
            int(f["snapshot_pid"]) if f.get("snapshot_pid") else None,
        ),
        copying_at=_number(f.get("copying_at")),
        phase=f.get("phase"),
        finish_started_at=f.get("finish_started_at"),
        keeping=Keeping(
            _tuple(f.get("keeps")),
            _tuple(f.get("drops")),
            _tuple(f.get("keep_notes")),
            _tuple(f.get("not_put_back")),
        ),
        verification=tuple(f.get("verification") or ()),
        sequences=f.get("sequences"),
        switch=Switch(f.get("target_state"), f.get("switched_at"), f.get("switch_ms")),
        worker=f.get("worker"),
        files=f.get("files"),
        result=f.get("result"),
        steps=tuple(Step.from_json(s) for s in f.get("steps") or () if isinstance(s, dict)),
    )


class RunRecord:
    """Reads and writes run records on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._set_state = client.register_script(_SET_STATE)
        self._finish_once = client.register_script(_FINISH_ONCE)
        self._note_error = client.register_script(_NOTE_ERROR)
        self._add_step = client.register_script(_ADD_STEP)

    def _merge(self, run_id: str, **fields: Any) -> None:
        """Merge JSON fields into the record (plain ones are written by their own methods)."""
        mapping = {k: json.dumps(v) for k, v in fields.items()}
        self.client.hset(run_key(run_id), mapping=mapping)

    # --- the run's life -------------------------------------------------------------------

    def create(
        self,
        run_id: str,
        kind: str,
        max_seconds: int,
        options: RunOptions | None = None,
        seen: dict[str, Any] | None = None,
        scheduled: bool = False,
        then: str | None = None,
    ) -> None:
        """Record a new run as queued, with the deadline past which it counts as failed."""
        record: dict[str, str] = {
            "run_id": run_id,
            "kind": kind,
            "state": str(RunState.QUEUED),
            "submitted_at": _now(),
            "deadline": str(time.time() + max_seconds),
        }
        if options is not None:
            record["options"] = json.dumps(options.as_kwargs())
        if seen is not None:
            record["seen"] = json.dumps(seen)
        if scheduled:
            record["scheduled"] = json.dumps(True)
        if then:
            record["then"] = json.dumps(then)
        pipe = self.client.pipeline()
        pipe.hset(run_key(run_id), mapping=record)
        pipe.expire(run_key(run_id), RECORD_TTL)
        pipe.lpush(RUNS_KEY, run_id)
        pipe.ltrim(RUNS_KEY, 0, 999)
        pipe.execute()

    def running(self, run_id: str, worker: str | None = None) -> None:
        """The run's work began (its first task runs); a run already ended stays ended."""
        self.client.hsetnx(run_key(run_id), "started_at", _now())
        if worker is not None:
            self._merge(run_id, worker=worker)
        self._set_state(keys=[run_key(run_id)], args=[str(RunState.RUNNING)])

    def finish_once(self, run_id: str, state: RunState, error: str | None = None) -> bool:
        """Set a terminal state only if none is set yet; True for the caller that did it."""
        args = [str(state), _now(), error or "", ended_channel(run_id)]
        return int(self._finish_once(keys=[run_key(run_id)], args=args)) == 1

    def note_error(self, run_id: str, error: str) -> None:
        """Remember an error of a known run for the errback; never creates a record.

        The run's first error stays its ``error``: a retried step that then fails differently
        (an effect, not the cause) is added to ``later_errors``, never substituted.
        """
        self._note_error(keys=[run_key(run_id)], args=[error])

    def request_cancel(self, run_id: str) -> None:
        """Flag the run so tasks not yet started refuse to run (``pagila-submit cancel``)."""
        self.client.hset(run_key(run_id), "cancel_requested", json.dumps(True))

    def cancel_requested(self, run_id: str) -> bool:
        """True once ``cancel`` flagged the run (one field read: checked before every commit)."""
        return bool(self.client.hget(run_key(run_id), "cancel_requested"))

    def add_task_ids(self, run_id: str, task_ids: list[str]) -> None:
        """Remember the run's task ids so ``cancel`` can revoke what is still queued."""
        if task_ids:
            key = f"{run_key(run_id)}:tasks"
            self.client.sadd(key, *task_ids)
            self.client.expire(key, RECORD_TTL)

    def task_ids(self, run_id: str) -> list[str]:
        """The run's task ids recorded so far."""
        return sorted(v.decode() for v in self.client.smembers(f"{run_key(run_id)}:tasks"))

    # --- units ----------------------------------------------------------------------------

    def unit(self, run_id: str, name: str, **info: Any) -> None:
        """Merge ``info`` (fields of :class:`UnitProgress`) into one unit's entry."""
        unknown = set(info) - set(UnitProgress.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a unit field: {', '.join(sorted(unknown))}")
        key, field = run_key(run_id), f"unit:{name}"
        old = self.client.hget(key, field)
        merged = {**(json.loads(old) if old else {}), **info, "updated_at": _now()}
        self.client.hset(key, field, json.dumps(merged))

    def delivered(self, run_id: str, unit_name: str) -> int:
        """Count one more delivery of a unit's message; the count so far."""
        return int(self.client.hincrby(run_key(run_id), f"deliveries:{unit_name}", 1))

    def table_copied(self, run_id: str, table: str, unit_names: list[str]) -> int:
        """Count ``unit_names`` of ``table`` as copied (a redelivery counts once); how many of
        its units are copied so far."""
        key = f"{run_key(run_id)}:copied:{table}"
        pipe = self.client.pipeline()
        pipe.sadd(key, *unit_names)
        pipe.expire(key, RECORD_TTL)
        pipe.scard(key)
        return int(pipe.execute()[-1])

    def is_copied(self, run_id: str, table: str, unit_name: str) -> bool:
        """Whether ``unit_name`` was counted as copied (its copy committed)."""
        return bool(self.client.sismember(f"{run_key(run_id)}:copied:{table}", unit_name))

    def table_built(self, run_id: str, table: str) -> set[str]:
        """Mark ``table`` copied and indexed (early keys may point at it); every table so."""
        key = f"{run_key(run_id)}:built"
        pipe = self.client.pipeline()
        pipe.sadd(key, table)
        pipe.expire(key, RECORD_TTL)
        pipe.smembers(key)
        return {v.decode() for v in pipe.execute()[-1]}

    def claim(self, run_id: str, what: str) -> bool:
        """True for the one caller, across workers, that claims ``what`` first in this run."""
        key = f"{run_key(run_id)}:claimed"
        pipe = self.client.pipeline()
        pipe.sadd(key, what)
        pipe.expire(key, RECORD_TTL)
        return bool(pipe.execute()[0])

    def defer_keys(self, run_id: str, entries: list[list[str]]) -> None:
        """Keep early foreign keys whose locks were busy, for the next table's build to try
        (:mod:`pagila_tasks.replication.earlykeys`)."""
        if not entries:
            return
        key = f"{run_key(run_id)}:deferred-keys"
        pipe = self.client.pipeline()
        pipe.rpush(key, *(json.dumps(e) for e in entries))
        pipe.expire(key, RECORD_TTL)
        pipe.execute()

    def take_deferred_keys(self, run_id: str) -> list[list[str]]:
        """Every deferred early key, taken at once (each is tried by one caller only)."""
        key = f"{run_key(run_id)}:deferred-keys"
        pipe = self.client.pipeline()  # MULTI: the read and the delete as one
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        return [list(json.loads(v)) for v in pipe.execute()[0]]

    def index_jobs(self, run_id: str, delta: int) -> int:
        """Add ``delta`` to the run's count of early index builds running; the count now."""
        key = f"{run_key(run_id)}:index-jobs"
        pipe = self.client.pipeline()
        pipe.incrby(key, delta)
        pipe.expire(key, RECORD_TTL)
        return int(pipe.execute()[0])

    def copy_started(self, run_id: str) -> None:
        """The first copy began (the snapshot holder stops waiting for one)."""
        self.client.hsetnx(run_key(run_id), "copying_at", str(time.time()))

    # --- what prepare decided -------------------------------------------------------------

    def save_plan(self, run_id: str, plan: ReplicationPlan) -> None:
        """Prepare's decisions, for the copies and the callback (one write)."""
        self.client.hset(
            run_key(run_id),
            mapping={"plan": json.dumps(plan.as_json()), "prepared_at": str(plan.prepared_at)},
        )

    def plan(self, run_id: str) -> ReplicationPlan | None:
        raw = self.client.hget(run_key(run_id), "plan")
        return ReplicationPlan.from_json(json.loads(raw)) if raw else None

    def store_schema(self, run_id: str, archive: bytes) -> None:
        """The run's schema dump (pg_dump's custom format), for post-data in the callback."""
        self.client.set(f"{run_key(run_id)}:schema", archive, ex=RECORD_TTL)

    def schema(self, run_id: str) -> bytes | None:
        return self.client.get(f"{run_key(run_id)}:schema")

    # --- the snapshot ---------------------------------------------------------------------

    def snapshot_starting(self, run_id: str, pid: int) -> None:
        """A holder process was started (any earlier attempt's snapshot forgotten)."""
        self.client.hdel(run_key(run_id), "snapshot", "snapshot_error")
        self.client.hset(run_key(run_id), "snapshot_pid", str(pid))

    def publish_snapshot(self, run_id: str, snapshot_id: str, holder: str) -> None:
        self.client.hset(
            run_key(run_id), mapping={"snapshot": snapshot_id, "snapshot_holder": holder}
        )

    def snapshot_failed(self, run_id: str, error: str) -> None:
        self.client.hset(run_key(run_id), "snapshot_error", error)

    def snapshot(self, run_id: str) -> SnapshotInfo:
        """The run's snapshot as published so far (read cheaply, while the holder starts)."""
        snap, err = self.client.hmget(run_key(run_id), "snapshot", "snapshot_error")
        return SnapshotInfo(snap.decode() if snap else None, error=err.decode() if err else None)

    def holder_view(self, run_id: str) -> tuple[RunState | None, float | None, bool]:
        """What the snapshot holder watches: the state, when prepare ended, whether a copy
        began (one read per beat)."""
        state, prepared, copying = self.client.hmget(
            run_key(run_id), "state", "prepared_at", "copying_at"
        )
        return (
            RunState(state.decode()) if state else None,
            float(prepared) if prepared else None,
            bool(copying),
        )

    # --- facts the phases report ----------------------------------------------------------

    def keeping(
        self,
        run_id: str,
        keeps: Iterable[str] | None = None,
        drops: Iterable[str] | None = None,
        notes: Iterable[str] | None = None,
        not_put_back: Iterable[str] | None = None,
    ) -> None:
        """What the run keeps of the target's users' work, lets go, or could not carry."""
        given = {"keeps": keeps, "drops": drops, "keep_notes": notes, "not_put_back": not_put_back}
        self._merge(run_id, **{k: list(v) for k, v in given.items() if v is not None})

    def step(self, run_id: str, step: Step) -> None:
        """One more step of the run's control tasks (see :meth:`Context.step`)."""
        data = {k: v for k, v in asdict(step).items() if v is not None}
        self._add_step(keys=[run_key(run_id)], args=[json.dumps(data)])

    def finishing(self, run_id: str) -> None:
        """The callback began."""
        self._merge(run_id, phase="finish", finish_started_at=_now())

    def verified(self, run_id: str, detail: list[dict[str, Any]], sequences: int) -> None:
        """The verification's per-table detail (counts, checksums, units' totals)."""
        self._merge(run_id, verification=detail, sequences=sequences)

    def switched(self, run_id: str, switch: Switch) -> None:
        """What the run left on the target: the switch's time and hold, or its failed state."""
        fields = {
            "target_state": switch.target_state,
            "switched_at": switch.switched_at,
            "switch_ms": switch.switch_ms,
        }
        self._merge(run_id, **{k: v for k, v in fields.items() if v is not None})

    def load_files(self, run_id: str, files: dict[str, Any]) -> None:
        """The files a load reads, with their sha256 (for its failed ledger row and readers)."""
        self._merge(run_id, files=files)

    def load_result(self, run_id: str, result: dict[str, Any]) -> None:
        self._merge(run_id, result=result)

    # --- reading --------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        """The run as recorded now; None when unknown. Reading changes nothing."""
        raw = self.client.hgetall(run_key(run_id))
        return _run(_decode(raw)) if raw else None

    def last_replication(self, limit: int = 20) -> Run | None:
        """The most recent succeeded replication that copied something (the next run's
        expected sizes and per-unit cost come from it)."""
        for run_id in self.recent(limit):
            run = self.get(run_id)
            copied = run is not None and any(u.bytes for u in run.units.values())
            if copied and run.kind == "replicate" and run.state == RunState.SUCCEEDED:
                return run
        return None

    def recent(self, limit: int) -> list[str]:
        """The most recent run ids, newest first."""
        return [v.decode() for v in self.client.lrange(RUNS_KEY, 0, limit - 1)]
