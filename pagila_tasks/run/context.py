"""What every task needs besides its arguments: the settings and the Redis-side objects.

Built once per worker process (``PagilaTask.ctx``) and shared by the load and the replication,
so both read the same lock and run records.
"""

from __future__ import annotations

import redis

from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.run.lock import RunLock
from pagila_tasks.run.model import Run
from pagila_tasks.run.record import RunRecord


class Context:
    """Settings, a Redis client, the run lock and the run records on that client."""

    def __init__(self, s: Settings, client: redis.Redis | None = None) -> None:
        self.s = s
        self.redis = client or redis.Redis.from_url(s.redis_url)
        self.lock = RunLock(self.redis, s.lock_ttl, s.lock_start_grace)
        self.record = RunRecord(self.redis)

    def run(self, run_id: str) -> Run:
        """The run as recorded now; a run Redis does not know is an error."""
        run = self.record.get(run_id)
        if run is None:
            raise ReplicationError(f"run {run_id} has no run record (Redis lost it?)")
        return run
