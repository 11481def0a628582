"""Start, watch and stop the stack's Python subprocesses (Celery workers, Flower).

Each process runs in its own session (its own process group), writes its output to a log
file, and has a pid file; stopping signals the group so a worker's pool children never
outlive it. Liveness checks look at ``/proc/<pid>/cmdline`` so a recycled pid is never taken
for (or killed as) one of ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pagila_stack import StackError, procfs

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Popen objects of processes started by this interpreter, kept so they can be reaped."""


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (None if gone or not Linux)."""
    return procfs.state(pid)


def cmdline(pid: int) -> str:
    """The command line of ``pid`` joined with spaces, or '' when unreadable."""
    return procfs.cmdline(pid)


def pid_alive(pid: int | None, needle: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, its command line holds ``needle``."""
    if not pid or pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if _state(pid) in ("Z", "X"):
        return False
    return needle is None or needle in cmdline(pid)


def group_alive(pgid: int) -> bool:
    """True when any non-zombie process is left in process group ``pgid``."""
    if not procfs.available():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return bool(procfs.group_members(pgid))


def read_pid(path: Path) -> int | None:
    """The pid in a pid file (first line), or None when missing or malformed."""
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically, so a reader never sees half a number."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def wait_gone(pid: int, timeout: float, needle: str | None = None) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid, needle):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    umask: int = -1,
) -> int:
    """Start ``argv`` detached in its own session, output appended to ``log_path``.

    The log is 0600 in a 0700 folder: a worker logs every task with its arguments. ``umask``
    (default: inherited) applies to whatever the process creates.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as log:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            umask=umask,
        )
    _CHILDREN[child.pid] = child
    return child.pid


def terminate(pid: int, needle: str | None, timeout: float = 20.0) -> bool:
    """SIGTERM the leader ``pid`` (warm shutdown), then SIGKILL its whole group after ``timeout``.

    Only acts when ``pid`` still looks like ours (``needle`` in its command line). Returns True
    when neither the process nor anything of its group is left.
    """
    if pid_alive(pid, needle):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
    if group_alive(pid):
        # Pool children whose leader died: nobody else will stop them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    _reap(pid)
    return not pid_alive(pid) and not group_alive(pid)


def check_started(started: Mapping[str, int], logs: Path, grace: float = 3.0) -> None:
    """Fail fast when a just-spawned process dies within ``grace`` seconds (bad import, port)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        dead = [name for name, pid in started.items() if not pid_alive(pid)]
        if dead:
            names = ", ".join(f"{n} (see {logs / (n + '.log')})" for n in dead)
            raise StackError(f"exited right after start: {names}")
        time.sleep(0.2)


WORKER_READY = re.compile(rb"@\S+ ready\.")
"""The line a Celery worker logs once it consumes its queues."""


def wait_ready(
    started: Mapping[str, int], offsets: Mapping[str, int], logs: Path, timeout: float = 90.0
) -> None:
    """Wait until each just-started worker logs that it is ready (after its log's ``offsets``),
    so that what ``up`` reports running takes tasks: a submit right after it would otherwise
    find no consumer on a slow machine. A worker that dies or stays silent past ``timeout``
    seconds is an error naming its log."""
    deadline = time.monotonic() + timeout
    waiting = dict(offsets)
    while waiting:
        for name, offset in list(waiting.items()):
            log = logs / f"{name}.log"
            with open(log, "rb") as f:
                f.seek(offset)
                if WORKER_READY.search(f.read()):
                    del waiting[name]
                    continue
            if not pid_alive(started[name]):
                raise StackError(f"{name} exited before it was ready (see {log})")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(f"{n} (see {logs / (n + '.log')})" for n in sorted(waiting))
            raise StackError(f"not ready after {timeout:.0f} s: {names}")
        if waiting:
            time.sleep(0.2)


def celery_argv(*args: str) -> list[str]:
    """``python -m celery -A pagila_tasks <args>`` with this interpreter."""
    return [sys.executable, "-m", "celery", "-A", "pagila_tasks", *args]


def worker_argv(name: str, queues: str | None = "copy,control") -> list[str]:
    """The command line of one worker: one process slot, a distinct node name; ``queues``
    None is Celery's default (every declared queue)."""
    chosen = ["-Q", queues] if queues else []
    return celery_argv(
        "worker", "-n", f"{name}@%h", "--concurrency", "1", *chosen, "--loglevel", "INFO"
    )


def flower_argv(port: int) -> list[str]:
    """Flower on localhost; its basic auth comes only from ``FLOWER_BASIC_AUTH`` in the env."""
    # Flower parses options with tornado, which wants ``--name=value``.
    return celery_argv("flower", f"--port={port}", "--address=127.0.0.1")


def beat_argv(schedule: Path) -> list[str]:
    """Celery beat with its schedule file in the stack's folder (not the working directory)."""
    return celery_argv("beat", "--loglevel", "INFO", "--schedule", str(schedule))


def project_dir() -> Path | None:
    """The checkout holding ``celeryconfig.py``, so workers import it even without an install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "celeryconfig.py").is_file() else None
