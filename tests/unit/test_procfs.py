"""The /proc reader shared by the stack, the tests and the benchmark, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pagila_stack import procfs
from tests.support import children, peak_rss_kib, wait_for

GONE_PID = 2**22 + 1
"""Above the kernel's largest possible pid_max, so never a process."""


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session that lives until the test ends."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # Popen returns at close-on-exec, a moment before the kernel shows the new command line.
    wait_for(lambda: procfs.argv(child.pid), 10, "sleep's command line")
    yield child
    child.kill()
    child.wait()


def test_parse_stat_counts_fields_after_the_last_bracket() -> None:
    """A command name holding spaces and ')' does not shift the state, parent and group."""
    raw = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 0 0"
    assert procfs.parse_stat(raw) == procfs.Stat("S", 7, 42)


def test_a_gone_pid_reads_as_nothing() -> None:
    """Every reader answers 'nothing' for a pid that does not exist, instead of raising."""
    assert procfs.stat(GONE_PID) is None
    assert procfs.state(GONE_PID) is None
    assert procfs.argv(GONE_PID) == []
    assert procfs.cmdline(GONE_PID) == ""
    assert procfs.peak_rss_kib(GONE_PID) is None
    assert procfs.label(GONE_PID) == "?"
    assert procfs.descendants([GONE_PID]) == []


def test_own_process_is_running_with_a_peak() -> None:
    """This process is running (R), its parent is os.getppid() and it has a VmHWM."""
    me = procfs.stat(os.getpid())
    assert me is not None
    assert me.state == "R"
    assert me.ppid == os.getppid()
    assert me.pgrp == os.getpgrp()
    assert (procfs.peak_rss_kib(os.getpid()) or 0) > 0


def test_children_and_descendants(sleeper: subprocess.Popen[bytes]) -> None:
    """A child is a child of this process; a grandchild is among its descendants only."""
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        grandchild = wait_for(lambda: procfs.children(shell.pid), 10, "the shell's child")[0]
        mine = procfs.children(os.getpid())
        assert sleeper.pid in mine and shell.pid in mine and grandchild not in mine
        assert children(os.getpid()) == mine
        below = procfs.descendants([shell.pid])
        assert set(below) == {shell.pid, grandchild}
    finally:
        os.killpg(shell.pid, 9)
        shell.wait()


def test_argv_and_cmdline(sleeper: subprocess.Popen[bytes]) -> None:
    """argv keeps the arguments apart; cmdline joins them with spaces."""
    assert procfs.argv(sleeper.pid) == ["sleep", "60"]
    assert procfs.cmdline(sleeper.pid) == "sleep 60"


def test_group_members_leave_out_zombies(sleeper: subprocess.Popen[bytes]) -> None:
    """A session leader is the only member of its group, and an exited one is none."""
    assert procfs.group_members(sleeper.pid) == [sleeper.pid]
    sleeper.kill()
    wait_for(lambda: procfs.state(sleeper.pid) in procfs.GONE, 10, "the zombie")
    assert procfs.group_members(sleeper.pid) == []


def _steady_peak(pid: int) -> bool:
    first = procfs.peak_rss_kib(pid)
    time.sleep(0.2)
    return procfs.state(pid) == "S" and first == procfs.peak_rss_kib(pid)


def test_peak_rss_of_tests_support(sleeper: subprocess.Popen[bytes]) -> None:
    """tests.support.peak_rss_kib gives the VmHWM, and fails naming a pid that has none."""
    # A just-started sleep is still mapping its libraries: wait until its peak stops growing.
    wait_for(lambda: _steady_peak(sleeper.pid), 10, "sleep's peak RSS to settle")
    assert peak_rss_kib(sleeper.pid) == procfs.peak_rss_kib(sleeper.pid) > 0
    with pytest.raises(AssertionError, match=str(GONE_PID)):
        peak_rss_kib(GONE_PID)


def test_peak_rss_is_a_high_water_mark() -> None:
    """VmHWM keeps a child's peak after the memory is freed."""
    code = "b = b'x' * (64 << 20); del b; print('ok', flush=True); import time; time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ok\n"
        time.sleep(0.1)
        assert (procfs.peak_rss_kib(child.pid) or 0) >= 64 * 1024
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("args", "label"),
    [
        ([], "?"),
        (["/usr/bin/python3", "-m", "celery", "-A", "pagila_tasks", "worker"], "celery worker"),
        (["python", "-m", "pagila_tasks.replication.snapshot", "run-1"], "snapshot holder"),
        (["/venv/bin/python3.11", "/repo/bench/floor_copy.py", "--jobs", "2"], "floor_copy.py"),
        (["python3", "-m", "pagila_tasks.cli.submit", "replicate"], "-m pagila_tasks.cli.submit"),
        (["/usr/lib/postgresql/15/bin/pg_dump", "-Fc"], "pg_dump"),
    ],
)
def test_label_of(args: list[str], label: str) -> None:
    """Workers and snapshot holders get their role, scripts their file, others their program."""
    assert procfs.label_of(args) == label
