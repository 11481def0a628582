"""What every task needs besides its arguments: the settings and the Redis-side objects.

Built once per worker process (``PagilaTask.ctx``) and shared by the load and the replication,
so both read the same lock and run records.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import redis

from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.run.lock import RunLock
from pagila_tasks.run.model import Run, Step
from pagila_tasks.run.record import RunRecord

log = logging.getLogger("pagila_tasks.steps")


class Context:
    """Settings, a Redis client, the run lock and the run records on that client."""

    def __init__(self, s: Settings, client: redis.Redis | None = None) -> None:
        self.s = s
        self.redis = client or redis.Redis.from_url(s.redis_url)
        self.lock = RunLock(self.redis, s.lock_ttl, s.lock_start_grace)
        self.record = RunRecord(self.redis)
        self.worker = socket.gethostname()
        """The node name of the worker whose task runs now (set by the tasks before each)."""

    def run(self, run_id: str) -> Run:
        """The run as recorded now; a run Redis does not know is an error."""
        run = self.record.get(run_id)
        if run is None:
            raise ReplicationError(f"run {run_id} has no run record (Redis lost it?)")
        return run

    def step(self, run_id: str, phase: str, text: str, error: bool = False) -> None:
        """One step of a control task: its ``STEP`` log line (what the benchmark reads) and
        its entry in the run record (what the report draws), with this worker process."""
        (log.error if error else log.info)("STEP %s %s: %s", phase, run_id, text)
        self.record.step(run_id, Step(phase, text, time.time(), self.worker, os.getpid()))
