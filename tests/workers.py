"""Real worker processes for the tests: ``celery -A pagila_tasks worker`` subprocesses."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from pagila_stack.processes import pid_alive, spawn, terminate, worker_argv
from tests.support import ROOT


class WorkerPool:
    """Named worker subprocesses with their own logs; started and stopped by a test or fixture."""

    def __init__(
        self,
        servers: object,
        prefix: str = "w",
        extra_env: dict[str, str] | None = None,
        queues: str | None = "copy,control",
    ) -> None:
        self.prefix = prefix
        self.queues = queues
        self.extra_env = extra_env or {}
        self.logs = Path(tempfile.mkdtemp(prefix=f"pagila-workers-{prefix}-"))
        self.pids: list[int] = []
        self.names: list[str] = []
        self.argv: list[str] | None = None  # a custom worker command (node args are appended)
        self.cwd: Path = ROOT  # where workers start; celery -A puts it first on sys.path

    def start(self, n: int, wait: bool = True) -> list[int]:
        """Start ``n`` workers (each one process slot) and wait until they answer a ping."""
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        for i in range(1, n + 1):
            name = f"{self.prefix}{i}"
            argv = worker_argv(name, self.queues)
            if self.argv is not None:
                argv = [*self.argv, *argv[argv.index("worker") + 1 :]]
            pid = spawn(argv, self.logs / f"{name}.log", env, cwd=self.cwd)
            self.pids.append(pid)
            self.names.append(name)
        if wait:
            self.wait_ready()
        return self.pids

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until every worker has registered with the broker."""
        from celery import Celery

        url = self.extra_env.get("PAGILA_REDIS_URL") or os.environ["PAGILA_REDIS_URL"]
        app = Celery(broker=url, set_as_current=False)
        end = time.monotonic() + timeout
        want = set(self.names)
        while time.monotonic() < end:
            dead = [p for p in self.pids if not pid_alive(p)]
            if dead:
                raise AssertionError(
                    f"worker died at start; logs in {self.logs}: {self.log_tail()}"
                )
            try:
                replies = app.control.inspect(timeout=1.0).ping() or {}
            except Exception:  # the broker may be restarting: ask again
                time.sleep(0.5)
                continue
            seen = {node.split("@", 1)[0] for node in replies}
            if want <= seen:
                app.close()
                return
        app.close()
        raise AssertionError(f"workers {want} did not answer a ping; logs in {self.logs}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every worker's log, for failure messages."""
        out = []
        for log in sorted(self.logs.glob("*.log")):
            out.append(
                f"--- {log.name}\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            )
        return "\n".join(out)

    def stop(self) -> None:
        """Warm-stop every worker (SIGKILL of its group if it will not stop)."""
        for pid in self.pids:
            terminate(pid, "celery", timeout=15)
        self.pids.clear()
        self.names.clear()
