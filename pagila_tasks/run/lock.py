"""The run lock: one Redis key that serializes loads and replications.

The key holds a JSON value naming the run; only a caller presenting that run id can extend or
release it (compare-and-set in Lua), so a run whose lock expired can neither free nor overwrite
the lock of the run that took it next. Writers call :meth:`RunLock.assert_held` just before they
commit, which refuses the late writes of a stale holder.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import redis

from pagila_tasks.base.errors import LockHeld, LockLost

LOCK_KEY = "pagila:lock"

_OWNED = """
local v = redis.call('GET', KEYS[1])
if not v then return -1 end
if cjson.decode(v)['run_id'] ~= ARGV[1] then return 0 end
"""
_EXTEND = _OWNED + "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1"
_RELEASE = _OWNED + "redis.call('DEL', KEYS[1]) return 1"


class RunLock:
    """The shared run lock, bound to one Redis client and a time-to-live in seconds."""

    def __init__(self, client: redis.Redis, ttl: int, start_grace: int = 0) -> None:
        self.client = client
        self.ttl_ms = ttl * 1000
        self.start_ms = max(ttl, start_grace) * 1000
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def acquire(self, run_id: str, kind: str) -> dict[str, str]:
        """Take the lock for ``run_id`` or raise :class:`LockHeld` naming the holder.

        The first expiry is ``start_grace``: the run's first task may wait in the queue before
        anything can extend the lock; once work runs it is extended by one TTL at a time.
        """
        value = {"run_id": run_id, "kind": kind, "since": datetime.now(UTC).isoformat()}
        if self.client.set(LOCK_KEY, json.dumps(value), nx=True, px=self.start_ms):
            return value
        holder = self.holder()
        raise LockHeld(holder or {"run_id": "?", "kind": "?", "since": "just now"})

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now, or None."""
        raw = self.client.get(LOCK_KEY)
        return json.loads(raw) if raw else None

    def extend(self, run_id: str) -> bool:
        """Push the expiry out by one TTL if ``run_id`` still holds the lock."""
        return int(self._extend(keys=[LOCK_KEY], args=[run_id, self.ttl_ms])) == 1

    def release(self, run_id: str) -> bool:
        """Free the lock if ``run_id`` holds it; never touches another run's lock."""
        return int(self._release(keys=[LOCK_KEY], args=[run_id])) == 1

    def held_by(self, run_id: str) -> bool:
        """True when ``run_id`` holds the lock now."""
        holder = self.holder()
        return bool(holder) and holder.get("run_id") == run_id

    def assert_held(self, run_id: str) -> None:
        """Raise :class:`LockLost` unless ``run_id`` holds the lock (call just before a commit)."""
        if not self.held_by(run_id):
            holder = self.holder()
            other = f"run {holder['run_id']} holds it now" if holder else "nobody holds it now"
            raise LockLost(f"run {run_id} no longer holds the run lock ({other}); write refused")


class Heartbeat:
    """A daemon thread that extends the lock every third of its TTL while work runs."""

    def __init__(self, lock: RunLock, run_id: str) -> None:
        self.lock = lock
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{run_id}", daemon=True)

    def _beat(self) -> None:
        interval = max(self.lock.ttl_ms / 3000, 0.5)
        while not self._stop.wait(interval):
            try:
                if not self.lock.extend(self.run_id):
                    return  # the lock is gone or another run's: assert_held refuses the next write
            except redis.RedisError:
                continue  # Redis away for a moment: the next beat tries again

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
