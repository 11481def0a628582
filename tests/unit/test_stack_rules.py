"""The local stack's rules that need no server: settings, folders, refusals, its own code."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pagila_stack import StackError
from pagila_stack import cli as stack_cli
from pagila_stack.access import make_traversable
from pagila_stack.redis_server import RedisServer
from pagila_tasks.base.errors import ConfigError
from pagila_tasks.config import stack_settings
from tests.support import ROOT

STACK_DIR = ROOT / "devstack" / "pagila_stack"


def test_a_private_parent_folder_is_never_widened(tmp_path: Path) -> None:
    """make_traversable refuses, naming the folder and what to change, rather than add o+x to
    a parent that grants others nothing (0700, 0750); no folder's mode changes. A parent that
    already grants others something gets the o+x it lacks."""
    ghost = pwd.struct_passwd(("ghost", "x", 65533, 65533, "", "/", "/bin/false"))
    target = tmp_path / "private" / "x" / "y"
    target.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    (tmp_path / "private" / "x").chmod(0o750)
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in target.parents}
    with pytest.raises(StackError, match=r"is private \(mode 07[05]0\).*chmod o\+x") as info:
        make_traversable(target, user=ghost)
    assert "--state or PAGILA_STACK_DIR" in str(info.value)
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in target.parents} == before
    if os.geteuid() == 0:  # tmp_path and pytest's folders above it are crossable then
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o754)
        shared.chmod(0o754)
        make_traversable(shared / "data", user=ghost)
        assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_stack_settings_read_the_two_stack_variables() -> None:
    """PAGILA_STACK_DIR and PAGILA_STACK_SERVERS are read by config.stack_settings only."""
    assert stack_settings({}).state_dir == Path(".stack")
    assert stack_settings({}).servers == "auto"
    got = stack_settings({"PAGILA_STACK_DIR": "/x/y", "PAGILA_STACK_SERVERS": " Embedded "})
    assert (got.state_dir, got.servers) == (Path("/x/y"), "embedded")
    with pytest.raises(ConfigError, match="PAGILA_STACK_SERVERS"):
        stack_settings({"PAGILA_STACK_SERVERS": "docker"})
    for module in ("cli.py", "binaries.py"):
        assert "os.environ" not in (STACK_DIR / module).read_text(), module


def test_stack_cli_reports_a_bad_servers_variable(monkeypatch, capsys) -> None:
    """A bad PAGILA_STACK_SERVERS makes `pagila-stack status` exit 2 with one line naming it."""
    monkeypatch.setenv("PAGILA_STACK_SERVERS", "docker")
    assert stack_cli.main(["status", "--state", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PAGILA_STACK_SERVERS" in err[0]


def test_worker_code_does_not_import_the_stack() -> None:
    """pagila_tasks.pg.pgtools (run by workers) finds pg_dump without importing the dev stack."""
    code = (
        "import sys, pagila_tasks.pg.pgtools; "
        "print(any(m.startswith('pagila_stack') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stack_modules_stay_small() -> None:
    """No module of pagila_tasks/stack is over 400 lines, and RedisServer has no dead url()."""
    for path in STACK_DIR.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
    assert not hasattr(RedisServer, "url")


@pytest.mark.parametrize("workers", ["-1", "33", "100000"])
def test_up_refuses_a_worker_count_out_of_bounds(
    workers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pagila-stack up --workers N` outside 0..32 exits 2 with one line and starts nothing."""
    state = tmp_path / "never"
    assert stack_cli.main(["up", "--workers", workers, "--state", str(state)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0] and str(stack_cli.MAX_WORKERS) in err[0]
    assert not state.exists()
