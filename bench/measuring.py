"""Measuring a command: its wall-clock seconds and the peak memory of its processes.

Memory is each process's ``VmHWM`` (the kernel's high-water mark, read through
:mod:`pagila_stack.procfs`), sampled over a whole process tree in a thread: one reading
at any time before a process exits gives its true peak, so only processes living less than one
interval can be missed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pagila_stack import procfs

METHOD_TIMEOUT = 3600.0
"""A measured command still running after this many seconds is killed (group and all)."""


class RssSampler:
    """Peak resident memory (VmHWM) of every process under ``roots()``, sampled in a thread.

    ``roots`` is called at every sample, so restarted processes (new pids) are followed.
    """

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.2) -> None:
        self.roots = roots
        self.interval = interval
        self.peaks: dict[int, tuple[int, str]] = {}
        """pid -> (peak KiB, label), the label read when the pid was first seen."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Read the VmHWM of every process of the trees now."""
        for pid in procfs.descendants(self.roots()):
            kib = procfs.peak_rss_kib(pid) or 0
            old = self.peaks.get(pid)
            if old is None or kib > old[0]:
                self.peaks[pid] = (kib, old[1] if old else procfs.label(pid))

    def peak(self) -> tuple[int, str]:
        """(bytes, label) of the process with the largest peak."""
        if not self.peaks:
            return 0, "-"
        kib, label = max(self.peaks.values())
        return kib * 1024, label

    def by_label(self) -> dict[str, int]:
        """The largest peak in bytes of each kind of process (label)."""
        out: dict[str, int] = {}
        for kib, label in self.peaks.values():
            out[label] = max(out.get(label, 0), kib * 1024)
        return out


@dataclass(frozen=True)
class Measured:
    """One command run to its end: time, exit code, output and peak memory."""

    seconds: float
    started_at: float
    """Wall-clock (epoch) start, to place log lines on the run's timeline."""
    rc: int
    stdout: str
    stderr: str
    peak_rss: int
    peak_proc: str
    peaks: dict[str, int]


def run_measured(
    argv: list[str],
    env: dict[str, str],
    roots: Callable[[], list[int]] | None = None,
    cwd: Path | None = None,
) -> Measured:
    """Run ``argv`` to its end; wall seconds, output, and the peak RSS of ``roots()``' trees.

    ``roots`` defaults to the command itself; ours passes the workers, which do the work the
    command only submits. The command gets its own session: pgcopydb ends a failed run by
    signalling its whole process group, which must not be ours. It is killed (group and all)
    after METHOD_TIMEOUT.
    """
    started_at = time.time()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with RssSampler(roots or (lambda: [proc.pid])) as sampler:
        try:
            out, err = proc.communicate(timeout=METHOD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            err += f"\nkilled after {METHOD_TIMEOUT:.0f} s"
    seconds = time.monotonic() - started
    peak, label = sampler.peak()
    return Measured(seconds, started_at, proc.returncode, out, err, peak, label, sampler.by_label())


def last_line(text: str) -> str:
    """The last non-blank line of a command's output (the one that names its error)."""
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


def du(path: Path) -> int:
    """Bytes of the files under ``path``: what a method wrote to local disk."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
