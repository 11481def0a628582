"""The stack's Celery processes: workers ``w1..wN``, Flower and beat, each with a pid file.

Pid files live in ``run/`` (workers in ``run/workers/``), logs in ``logs/<name>.log`` (0600),
beat's schedule in ``run/beat-schedule``. The environment each process gets is decided by
:class:`~pagila_stack.stack.Stack`; this module only starts, stops and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pagila_stack import StackError
from pagila_stack.access import PRIVATE_UMASK
from pagila_stack.processes import (
    beat_argv,
    flower_argv,
    pid_alive,
    project_dir,
    read_pid,
    spawn,
    terminate,
    worker_argv,
    write_pid,
)

_FLOWER_ENV_KEEP = frozenset(
    ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH")
)
"""What Flower keeps of the caller's environment: nothing that could hold a secret."""
FLOWER_NEEDLE = "flower"
BEAT_NEEDLE = "pagila_tasks beat"
"""What a live process's command line must hold to be taken for ours (pids get reused)."""


def worker_env(
    environ: Mapping[str, str], stack_env: Mapping[str, str], extra: Mapping[str, str] | None
) -> dict[str, str]:
    """A worker's (or beat's) environment: ``environ``, the stack's ``PAGILA_*``, ``extra``."""
    pagila = {k: v for k, v in stack_env.items() if k.startswith("PAGILA_")}
    return {**environ, **pagila, "PYTHONUNBUFFERED": "1", **(extra or {})}


def flower_env(environ: Mapping[str, str], redis_url: str, basic_auth: str) -> dict[str, str]:
    """Flower's environment: the Redis URL, its login, read-only, and no database DSN.

    Built from a short allow-list of ``environ``, which may hold DSNs (the test suite's does).
    Flower needs none: Celery's configuration falls back to built-in DSNs it never uses there.
    Read-only: even a logged-in user cannot send, revoke or stop anything from Flower.
    """
    kept = {k: v for k, v in environ.items() if k in _FLOWER_ENV_KEEP or k.startswith("LC_")}
    return {
        **kept,
        "PAGILA_REDIS_URL": redis_url,
        "FLOWER_BASIC_AUTH": basic_auth,
        "FLOWER_READ_ONLY": "true",
        "PYTHONUNBUFFERED": "1",
    }


class CeleryProcesses:
    """Start, stop and report the Celery processes of one state folder; safe to repeat."""

    def __init__(self, run_dir: Path, logs: Path, say: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.logs = logs
        self._say = say
        self.spawned: dict[str, int] = {}
        """Processes started since the last :meth:`reset` (checked right after ``up``)."""
        self.log_offsets: dict[str, int] = {}
        """Where each started process's log stood before its start (its new lines follow)."""

    @property
    def beat_schedule(self) -> Path:
        """Beat's schedule file (last run times), kept with the stack's other state."""
        return self.run_dir / "beat-schedule"

    def reset(self) -> None:
        """Forget what was started, before a new ``up``."""
        self.spawned = {}
        self.log_offsets = {}

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        log = self.logs / f"{name}.log"
        self.log_offsets[name] = log.stat().st_size if log.exists() else 0
        pid = spawn(argv, log, env, cwd=project_dir(), umask=PRIVATE_UMASK)
        self.spawned[name] = pid
        return pid

    def started_workers(self, prefix: str = "w") -> dict[str, int]:
        """The workers started since the last :meth:`reset`, with their log offsets."""
        return {
            name: self.log_offsets[name]
            for name in self.spawned
            if name.startswith(prefix) and name[len(prefix) :].isdigit()
        }

    # -- workers --------------------------------------------------------------------------

    def worker_pidfiles(self) -> list[Path]:
        """Pid files of every worker of this state folder."""
        return sorted((self.run_dir / "workers").glob("*.pid"))

    def start_workers(
        self, n: int, env: Mapping[str, str], queues: str = "copy,control", prefix: str = "w"
    ) -> list[int]:
        """Ensure workers ``<prefix>1..<prefix>n`` run (one process slot each); their pids."""
        pids = []
        for i in range(1, n + 1):
            name = f"{prefix}{i}"
            pidfile = self.run_dir / "workers" / f"{name}.pid"
            pid = read_pid(pidfile)
            if pid_alive(pid, "celery"):
                self._say(f"{name}: running, pid {pid}")
            else:
                pid = self._spawn(name, worker_argv(name, queues), env)
                write_pid(pidfile, pid)
                self._say(f"{name}: started worker, pid {pid}")
            pids.append(pid)
        return pids

    def _stop_pidfile(self, pidfile: Path, needle: str, timeout: float) -> None:
        pid = read_pid(pidfile)
        if pid is not None and not terminate(pid, needle, timeout):
            raise StackError(f"{pidfile.stem}: pid {pid} would not stop")
        pidfile.unlink(missing_ok=True)
        if pid is not None:
            self._say(f"{pidfile.stem}: stopped, pid {pid}")

    def stop_workers_above(self, n: int, prefix: str = "w") -> None:
        """Stop workers numbered above ``n``, so ``up --workers n`` leaves exactly n."""
        for pidfile in self.worker_pidfiles():
            number = pidfile.stem[len(prefix) :]
            if pidfile.stem.startswith(prefix) and number.isdigit() and int(number) > n:
                self._stop_pidfile(pidfile, "celery", timeout=20)

    def stop_workers(self, timeout: float = 20) -> None:
        """Stop every worker: SIGTERM (warm shutdown), SIGKILL of its group after ``timeout``."""
        for pidfile in self.worker_pidfiles():
            self._stop_pidfile(pidfile, "celery", timeout)

    # -- flower and beat (one each) -------------------------------------------------------

    def _single(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def running(self, name: str, needle: str) -> int | None:
        """The pid of the running ``flower`` or ``beat``, else None."""
        pid = read_pid(self._single(name))
        return pid if pid_alive(pid, needle) else None

    def start_flower(self, port: int, env: Mapping[str, str]) -> int:
        """Start Flower on 127.0.0.1:``port`` (the caller checked it is not running)."""
        pid = self._spawn("flower", flower_argv(port), env)
        write_pid(self._single("flower"), pid)
        return pid

    def ensure_beat(self, env: Mapping[str, str]) -> int:
        """Ensure the one ``celery beat`` of this stack runs; its pid.

        One only: two beats would send every scheduled run twice.
        """
        pid = self.running("beat", BEAT_NEEDLE)
        if pid is not None:
            self._say(f"beat: running, pid {pid}")
            return pid
        pid = self._spawn("beat", beat_argv(self.beat_schedule), env)
        write_pid(self._single("beat"), pid)
        self._say(f"beat: started, pid {pid}")
        return pid

    def stop_all(self) -> None:
        """Stop beat first (it sends work), then the workers, then Flower."""
        if self._single("beat").exists():
            self._stop_pidfile(self._single("beat"), BEAT_NEEDLE, timeout=10)
        self.stop_workers()
        if self._single("flower").exists():
            self._stop_pidfile(self._single("flower"), FLOWER_NEEDLE, timeout=10)

    def status(self, ports: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """``{name: {"pid", "port", "alive"}}`` for every worker, Flower and beat known here."""
        services: dict[str, dict[str, Any]] = {}
        for pidfile in self.worker_pidfiles():
            pid = read_pid(pidfile)
            services[pidfile.stem] = {"pid": pid, "port": None, "alive": pid_alive(pid, "celery")}
        for name, needle in (("flower", FLOWER_NEEDLE), ("beat", BEAT_NEEDLE)):
            if self._single(name).exists():
                pid = read_pid(self._single(name))
                services[name] = {
                    "pid": pid,
                    "port": ports.get(name),
                    "alive": pid_alive(pid, needle),
                }
        return services
