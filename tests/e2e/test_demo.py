"""`make demo`'s script: stack up, load + replicate + table, stack down, nothing left running."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, completed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _processes_under(folder: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in cmd:
                found.append(f"{entry.name}: {cmd[:120]}")
    return found


def test_demo_runs_the_main_job_and_cleans_up(tmp_path: Path) -> None:
    """scripts/demo.py prints a verified table for every Pagila table and leaves no process."""
    state = tmp_path / "demo-stack"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PAGILA_") or k == "PAGILA_SQL_DIR"
    }
    env["PAGILA_STACK_DIR"] = str(state)
    proc = completed([sys.executable, "scripts/demo.py"], ROOT, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "verdict" in proc.stdout and proc.stdout.count(" ok") >= 21
    assert "public.rental" in proc.stdout and ": succeeded" in proc.stdout
    assert not _processes_under(state)
