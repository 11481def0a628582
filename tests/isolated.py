"""Workers and a Redis database of a test's own, so special settings never reach the session's."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import redis

from tests.support import free_redis_url, submit, submit_json, wait_for
from tests.workers import WorkerPool


class Isolated:
    """Workers, settings and a free Redis database of one test (built by the ``isolated`` fixture).

    ``env`` holds the test's variables; the fixture also sets them in the test process through
    ``monkeypatch``, so in-process code (a Celery app, a config) sees what the workers see.
    """

    def __init__(self, servers: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.servers = servers
        self.env = {"PAGILA_REDIS_URL": free_redis_url(servers.redis_url), **env}
        self.pools: list[WorkerPool] = []
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["PAGILA_REDIS_URL"])

    def pool(
        self,
        n: int,
        prefix: str = "f",
        queues: str | None = "copy,control",
        argv=None,
        wait: bool = True,
    ) -> WorkerPool:
        pool = WorkerPool(self.servers, prefix=prefix, extra_env=self.env, queues=queues)
        if argv is not None:
            pool.argv = argv
        self.pools.append(pool)
        pool.start(n, wait=wait)
        return pool

    def submit(self, *args: str, timeout: float = 300):
        """``pagila-submit ARGS`` with the test's settings; a hang fails with the workers' logs."""
        try:
            return submit(*args, env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            tails = "\n".join(pool.log_tail(60) for pool in self.pools)
            raise AssertionError(f"{exc}\n{exc.stdout!r}\n{exc.stderr!r}\n{tails}") from None

    def submit_json(self, *args: str, timeout: float = 300):
        return submit_json(*args, env=self.env, timeout=timeout)

    def start(self, kind: str, **options: object) -> str:
        """Start a run as pagila-submit does after its checks (lock, record, first task), with
        the project's own app on this test's Redis: for runs no worker may serve yet."""
        from dataclasses import replace

        from celery import Celery

        from pagila_tasks.config import from_env
        from pagila_tasks.run import lifecycle
        from pagila_tasks.run.context import Context
        from pagila_tasks.submission.schedule import (
            OPTIONS as defaults,  # nothing forced or overwritten
        )

        app = Celery(set_as_current=False)
        app.config_from_object("celeryconfig")
        app.conf.broker_url = app.conf.result_backend = self.env["PAGILA_REDIS_URL"]
        ctx = Context(from_env())
        try:
            return lifecycle.start(
                ctx,
                kind,
                replace(defaults[kind], **options),
                lambda name, kwargs: str(app.send_task(name, kwargs=kwargs).id),
            )
        finally:
            app.close()

    def record(self, run_id: str) -> dict:
        """The run as ``pagila-submit status`` sees it (a run past its deadline ended first),
        as JSON (:meth:`pagila_tasks.run.model.Run.as_json`); ``{}`` when unknown."""
        from pagila_tasks.config import from_env
        from pagila_tasks.run import lifecycle
        from pagila_tasks.run.context import Context

        run = lifecycle.current(Context(from_env(), self.redis), run_id)
        return run.as_json() if run is not None else {}

    def wait_unit_running(self, run_id: str, unit: str, timeout: float = 60) -> dict:
        def running():
            u = self.record(run_id).get("units", {}).get(unit, {})
            return u if u.get("state") == "running" else None

        return wait_for(running, timeout, f"{unit} to be copying")

    def wait_done(self, run_id: str, timeout: float = 180) -> dict:
        from pagila_tasks.run.model import TERMINAL

        return wait_for(
            lambda: (r := self.record(run_id)).get("state") in TERMINAL and r,
            timeout,
            f"run {run_id} to end",
        )

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the test's workers and empty its Redis database (which frees it)."""
        for pool in self.pools:
            pool.stop()
        self.redis.flushdb()
