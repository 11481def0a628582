"""`pagila-stack up` returns once the workers it started consume their queues: it waits for
each one's "ready." line written after its start, and names the worker that died or stayed
silent."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pagila_stack import StackError
from pagila_stack.processes import wait_ready


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_waits_for_the_ready_line_written_after_the_start(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_bytes(b"[old] w1@vm ready.\n")  # an earlier start's line does not count
    offset = log.stat().st_size
    proc = _sleeper()
    try:

        def later() -> None:
            time.sleep(0.5)
            with open(log, "ab") as f:
                f.write(b"[2026-12-07 10:29:32,978: INFO/MainProcess] w1@vm ready.\n")

        threading.Thread(target=later).start()
        started = time.monotonic()
        wait_ready({"w1": proc.pid}, {"w1": offset}, tmp_path, timeout=10)
        assert time.monotonic() - started >= 0.4
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_that_dies_or_stays_silent_is_named(tmp_path: Path) -> None:
    (tmp_path / "w1.log").write_bytes(b"")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.raises(StackError, match="w1 exited before it was ready"):
        wait_ready({"w1": dead.pid}, {"w1": 0}, tmp_path, timeout=10)
    (tmp_path / "w2.log").write_bytes(b"mingle: searching for neighbors\n")
    proc = _sleeper()
    try:
        with pytest.raises(StackError, match=r"not ready after 1 s: w2"):
            wait_ready({"w2": proc.pid}, {"w2": 0}, tmp_path, timeout=1)
    finally:
        proc.kill()
        proc.wait()
