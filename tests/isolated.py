"""Workers and a Redis database of a test's own, so special settings never reach the session's."""

from __future__ import annotations

import os
import re

import redis

from tests.support import submit, submit_json, wait_for
from tests.workers import WorkerPool

FAULT_DB = 2


class Isolated:
    """Workers and a Redis database of the test's own, with the settings a fault needs."""

    def __init__(self, servers, env: dict[str, str]) -> None:
        self.servers = servers
        self.env = {"PAGILA_REDIS_URL": re.sub(r"/\d+$", f"/{FAULT_DB}", servers.redis_url), **env}
        self.pools: list[WorkerPool] = []
        self._old: dict[str, str | None] = {}

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["PAGILA_REDIS_URL"])

    def pool(
        self, n: int, prefix: str = "f", queues: str = "copy,control", argv=None, wait: bool = True
    ) -> WorkerPool:
        pool = WorkerPool(self.servers, prefix=prefix, extra_env=self.env, queues=queues)
        if argv is not None:
            pool.argv = argv
        pool.start(n, wait=wait)
        self.pools.append(pool)
        return pool

    def submit(self, *args: str, timeout: float = 300):
        return submit(*args, env=self.env, timeout=timeout)

    def submit_json(self, *args: str, timeout: float = 300):
        return submit_json(*args, env=self.env, timeout=timeout)

    def record(self, run_id: str) -> dict:
        from pagila_tasks.progress import Progress

        return Progress(self.redis).get(run_id) or {}

    def wait_unit_running(self, run_id: str, unit: str, timeout: float = 60) -> dict:
        def running():
            u = self.record(run_id).get("units", {}).get(unit, {})
            return u if u.get("state") == "running" else None

        return wait_for(running, timeout, f"{unit} to be copying")

    def wait_done(self, run_id: str, timeout: float = 180) -> dict:
        from pagila_tasks.progress import TERMINAL

        return wait_for(
            lambda: (r := self.record(run_id)).get("state") in TERMINAL and r,
            timeout,
            f"run {run_id} to end",
        )

    def __enter__(self) -> Isolated:
        self._old = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        self.redis.flushdb()
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in self.pools:
            pool.stop()
        self.redis.flushdb()
        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
