"""The run's progress record in Redis: what the submit script, ``status`` and Flower users read.

One hash per run (``pagila:run:<id>``) with the run's state and one JSON field per unit of work;
a capped list (``pagila:runs``) of recent run ids. Timings and worker names live here, never in
task return values, which must stay deterministic for chord counting.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

RUNS_KEY = "pagila:runs"
RECORD_TTL = 30 * 24 * 3600
TERMINAL = ("succeeded", "failed", "cancelled", "skipped")
_PLAIN = frozenset(
    (
        *("run_id", "kind", "state", "submitted_at", "started_at", "finished_at", "error"),
        *("deadline", "snapshot", "snapshot_holder", "snapshot_error", "copying_at"),
    )
)


_UNLESS_ENDED = (
    "local s = redis.call('HGET', KEYS[1], 'state')\n"
    f"if {' or '.join(f's == {state!r}' for state in TERMINAL)} then return 0 end\n"
)
"""Lua: leave a run that reached a terminal state alone (the scripts below go on otherwise)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def run_key(run_id: str) -> str:
    """Redis key of one run's record."""
    return f"pagila:run:{run_id}"


class Progress:
    """Reads and writes run records on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def create(self, run_id: str, kind: str, max_seconds: int, **fields: Any) -> None:
        """Record a new run as queued, with the deadline past which it counts as failed."""
        record = {
            "run_id": run_id,
            "kind": kind,
            "state": "queued",
            "submitted_at": _now(),
            "deadline": str(time.time() + max_seconds),
            **{k: json.dumps(v) for k, v in fields.items()},
        }
        pipe = self.client.pipeline()
        pipe.hset(run_key(run_id), mapping=record)
        pipe.expire(run_key(run_id), RECORD_TTL)
        pipe.lpush(RUNS_KEY, run_id)
        pipe.ltrim(RUNS_KEY, 0, 999)
        pipe.execute()

    def set_state(self, run_id: str, state: str, error: str | None = None, **fields: Any) -> None:
        """Move the run to ``state`` and merge ``fields``; terminal states get a finish time.

        A run already ended (cancelled while its first task started, say) keeps its terminal
        state: only the fields are merged.
        """
        mapping: dict[str, str] = {}
        if state == "running":
            self.client.hsetnx(run_key(run_id), "started_at", _now())
        if state in TERMINAL:
            mapping["finished_at"] = _now()
        if error is not None:
            mapping["error"] = error
        mapping.update({k: json.dumps(v) for k, v in fields.items()})
        if mapping:
            self.client.hset(run_key(run_id), mapping=mapping)
        script = self.client.register_script(
            _UNLESS_ENDED + "redis.call('HSET', KEYS[1], 'state', ARGV[1]) return 1"
        )
        script(keys=[run_key(run_id)], args=[state])

    def finish_once(self, run_id: str, state: str, error: str | None = None) -> bool:
        """Set a terminal state only if none is set yet; True for the caller that did it."""
        script = self.client.register_script(
            _UNLESS_ENDED
            + "redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at', ARGV[2])\n"
            "if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end\n"
            "return 1"
        )
        return int(script(keys=[run_key(run_id)], args=[state, _now(), error or ""])) == 1

    def note_error(self, run_id: str, error: str) -> None:
        """Remember an error of a known run for the errback; never creates a record.

        The run's first error stays its ``error``: a retried step that then fails differently
        (an effect, not the cause) is added to ``later_errors``, never substituted.
        """
        script = self.client.register_script(
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
        script(keys=[run_key(run_id)], args=[error])

    def request_cancel(self, run_id: str) -> None:
        """Flag the run so copies not yet started refuse to run (``pagila-submit cancel``)."""
        self.client.hset(run_key(run_id), "cancel_requested", json.dumps(True))

    def unit(self, run_id: str, name: str, **info: Any) -> None:
        """Merge ``info`` into one unit's progress entry (state, rows, bytes, worker, ...)."""
        key = run_key(run_id)
        field = f"unit:{name}"
        old = self.client.hget(key, field)
        merged = {**(json.loads(old) if old else {}), **info, "updated_at": _now()}
        self.client.hset(key, field, json.dumps(merged))

    def add_task_ids(self, run_id: str, task_ids: list[str]) -> None:
        """Remember the run's task ids so ``cancel`` can revoke what is still queued."""
        if task_ids:
            key = f"{run_key(run_id)}:tasks"
            self.client.sadd(key, *task_ids)
            self.client.expire(key, RECORD_TTL)

    def task_ids(self, run_id: str) -> list[str]:
        """The run's task ids recorded so far."""
        return sorted(v.decode() for v in self.client.smembers(f"{run_key(run_id)}:tasks"))

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run record, decoded, with ``units`` as a dict; None when unknown.

        A run past its deadline that is not finished is reported (and recorded) as failed, so
        no run stays "running" forever after Redis lost its messages.
        """
        raw = self.client.hgetall(run_key(run_id))
        if not raw:
            return None
        record: dict[str, Any] = {"units": {}}
        for k, v in raw.items():
            key, value = k.decode(), v.decode()
            if key.startswith("unit:"):
                record["units"][key[5:]] = json.loads(value)
            elif key in _PLAIN:
                record[key] = value
            else:
                try:
                    record[key] = json.loads(value)
                except ValueError:
                    record[key] = value
        if record.get("state") not in TERMINAL and time.time() > float(
            record.get("deadline", "inf")
        ):
            error = "run exceeded PAGILA_MAX_RUN_SECONDS without finishing; marked failed"
            if self.finish_once(run_id, "failed", error):
                record.update(state="failed", error=error)
        return record

    def recent(self, limit: int) -> list[str]:
        """The most recent run ids, newest first."""
        return [v.decode() for v in self.client.lrange(RUNS_KEY, 0, limit - 1)]


def table_totals(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per table, its units summed: rows, bytes, spill, workers, seconds and states.

    A table split in key ranges has several units; the audit detail and the summary table both
    speak per table.
    """
    totals: dict[str, dict[str, Any]] = {}
    for u in record.get("units", {}).values():
        t = totals.setdefault(
            u.get("table", "?"),
            {
                "rows": 0,
                "bytes": 0,
                "spilled": False,
                "workers": set(),
                "seconds": 0.0,
                "states": [],
            },
        )
        t["rows"] += int(u.get("rows", 0))
        t["bytes"] += int(u.get("bytes", 0))
        t["spilled"] = t["spilled"] or bool(u.get("spilled"))
        if u.get("worker"):
            t["workers"].add(str(u["worker"]))
        t["seconds"] += float(u.get("seconds", 0))
        t["states"].append(u.get("state"))
    for t in totals.values():
        t["workers"] = sorted(t["workers"])
        t["seconds"] = round(t["seconds"], 3)
    return totals
