"""The one reader of Linux ``/proc`` for processes: the stack, the tests and the benchmark.

Why one module: the stack must tell its own processes from recycled pids and stop whole process
groups, the tests find a worker's pool children and their peak memory, and the benchmark samples
the peak memory of whole process trees. All three parse the same files, and the parsing has
traps (a command name may hold spaces and ``)``, a process may vanish between two reads, a
kernel thread has no memory figures), so it is written once, here. Every function answers
"nothing" (None, ``[]``, ``""``) for a process that is gone instead of raising: processes end
at any time, and callers poll.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

PROC = Path("/proc")
"""Where the kernel shows its processes (absent on macOS and Windows)."""

GONE = ("Z", "X")
"""States of a process that has exited (zombie, dead) but may still have a ``/proc`` entry."""


class Stat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` the callers use."""

    state: str
    """One letter: R running, S sleeping, T stopped, Z zombie, ..."""
    ppid: int
    pgrp: int


def available() -> bool:
    """True on a system with ``/proc`` (callers fall back to signals elsewhere)."""
    return PROC.is_dir()


def parse_stat(raw: bytes) -> Stat:
    """The state, parent and process group in the text of a ``/proc/<pid>/stat`` file.

    The command name in brackets may hold spaces and ``)``, so the fields are counted from the
    last ``)``.
    """
    fields = raw.rsplit(b")", 1)[-1].split()
    return Stat(fields[0].decode(), int(fields[1]), int(fields[2]))


def stat(pid: int) -> Stat | None:
    """``pid``'s state, parent and process group, or None when it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return parse_stat(raw)


def state(pid: int) -> str | None:
    """``pid``'s one-letter state, or None when it is gone (or there is no ``/proc``)."""
    found = stat(pid)
    return found.state if found else None


def table() -> dict[int, Stat]:
    """Every process at this instant, pid -> its stat (one pass, so a tree is consistent)."""
    out: dict[int, Stat] = {}
    try:
        entries = list(os.scandir(PROC))
    except OSError:
        return out
    for entry in entries:
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None:
                out[int(entry.name)] = found
    return out


def children(pid: int, procs: Mapping[int, Stat] | None = None) -> list[int]:
    """The direct children of ``pid`` (in ``procs``, else in a fresh :func:`table`)."""
    procs = table() if procs is None else procs
    return [child for child, st in procs.items() if st.ppid == pid]


def descendants(roots: Iterable[int], procs: Mapping[int, Stat] | None = None) -> list[int]:
    """The ``roots`` still running and every process below them, each once.

    Why: a worker's memory is its own plus its pool children's and what they start (pg_dump,
    the snapshot holder); they are found from one reading of the table.
    """
    procs = table() if procs is None else procs
    below: dict[int, list[int]] = {}
    for pid, st in procs.items():
        below.setdefault(st.ppid, []).append(pid)
    todo = [pid for pid in roots if pid in procs]
    seen: dict[int, None] = {}
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen[pid] = None
            todo.extend(below.get(pid, []))
    return list(seen)


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` that have not exited (zombies left out).

    Why: a worker's pool children outlive a killed leader in its group; stopping the stack
    waits until none is left.
    """
    return [pid for pid, st in table().items() if st.pgrp == pgid and st.state not in GONE]


def argv(pid: int) -> list[str]:
    """``pid``'s command line as a list, or ``[]`` when gone (or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def cmdline(pid: int) -> str:
    """``pid``'s command line joined with spaces, or ``""`` when unreadable.

    Why: a pid file may name a pid the kernel has since given to another program; a needle
    searched in this string tells ours apart.
    """
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def peak_rss_kib(pid: int) -> int | None:
    """``pid``'s peak resident memory (``VmHWM``) in KiB, or None when gone or a kernel thread.

    Why VmHWM: it is the kernel's own high-water mark, so one reading at any time before the
    process exits gives its true peak; sampling the current RSS would miss short peaks.
    """
    try:
        with open(PROC / str(pid) / "status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def label_of(args: list[str]) -> str:
    """A short name for a command line, as the benchmark prints it beside a peak.

    Celery workers and snapshot holders get their role; a Python script its file name (or its
    ``-m`` module); anything else its program name.
    """
    if not args:
        return "?"
    if "celery" in args and "worker" in args:
        return "celery worker"
    if "pagila_tasks.replication.snapshot" in args:
        return "snapshot holder"
    if Path(args[0]).name.startswith("python") and len(args) > 1:
        return Path(args[1]).name if not args[1].startswith("-") else " ".join(args[1:3])
    return Path(args[0]).name


def label(pid: int) -> str:
    """:func:`label_of` ``pid``'s command line (``?`` when gone)."""
    return label_of(argv(pid))
