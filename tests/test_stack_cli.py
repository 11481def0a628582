"""pagila-stack as a user runs it: up with N workers, celery inspect ping, status, env, down."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pagila_tasks.stack.processes import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def stack_cmd(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pagila_tasks.stack.cli", *args, "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_ping_status_env_down(tmp_path: Path) -> None:
    """`pagila-stack up --workers 3` gives three workers that answer `celery inspect ping`."""
    state = tmp_path / "stack"
    up = stack_cmd(state, "up", "--workers", "3", "--flower")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env_out = stack_cmd(state, "env")
        assert env_out.returncode == 0
        env = dict(os.environ)
        for line in env_out.stdout.splitlines():
            key, _, value = shlex.split(line)[1].partition("=")
            env[key] = value
        assert {"PAGILA_SOURCE_DSN", "PAGILA_TARGET_DSN", "PAGILA_REDIS_URL"} <= set(env)
        ping = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pagila_tasks",
                "inspect",
                "ping",
                "--timeout",
                "5",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        nodes = json.loads(ping.stdout.strip().splitlines()[-1])
        assert {n.split("@")[0] for n in nodes} == {"w1", "w2", "w3"}
        status = stack_cmd(state, "status", "--json")
        services = json.loads(status.stdout)["services"]
        assert all(s["alive"] for s in services.values()), services
        pids = [s["pid"] for s in services.values() if s.get("pid")]
        assert len(pids) >= 7  # source, target, redis, flower, three workers
    finally:
        down = stack_cmd(state, "down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in pids if pid_alive(p)]
