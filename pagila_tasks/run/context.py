"""What every task needs besides its arguments: the settings and the Redis-side objects.

Built once per worker process (``PagilaTask.ctx``) and shared by the load and the replication,
so both read the same lock and progress records.
"""

from __future__ import annotations

from typing import Any

import redis

from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.run.lock import RunLock
from pagila_tasks.run.progress import Progress


class Context:
    """Settings, a Redis client, the run lock and the progress records on that client."""

    def __init__(self, s: Settings, client: redis.Redis | None = None) -> None:
        self.s = s
        self.redis = client or redis.Redis.from_url(s.redis_url)
        self.lock = RunLock(self.redis, s.lock_ttl, s.lock_start_grace)
        self.progress = Progress(self.redis)

    def record(self, run_id: str) -> dict[str, Any]:
        """The run's progress record; a run Redis does not know is an error."""
        rec = self.progress.get(run_id)
        if rec is None:
            raise ReplicationError(f"run {run_id} has no progress record (Redis lost it?)")
        return rec
