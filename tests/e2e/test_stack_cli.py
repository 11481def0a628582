"""pagila-stack as a user runs it: up with N workers, celery inspect ping, status, env, down."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pagila_stack.processes import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def stack_cmd(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pagila_stack.cli", *args, "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_ping_status_env_down(tmp_path: Path) -> None:
    """`pagila-stack up --workers 3 --flower --beat` gives three workers that answer `celery
    inspect ping`, one beat with its files in the state folder, and `down` stops them all."""
    state = tmp_path / "stack"
    up = stack_cmd(state, "up", "--workers", "3", "--flower", "--beat")
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
        assert len(pids) >= 8  # source, target, redis, flower, beat, three workers
        beat = services["beat"]
        assert "pagila_tasks beat" in Path(f"/proc/{beat['pid']}/cmdline").read_text().replace(
            "\0", " "
        )
        assert Path(beat["log"]).parent == state / "logs"
        assert list((state / "run").glob("beat-schedule*")), "beat keeps its schedule in run/"
        assert (state / "run" / "beat.pid").is_file()
        logs = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (state / "logs").glob("*.log")}
        assert {"w1.log", "flower.log", "beat.log", "redis.log"} <= set(logs)
        assert all(mode & 0o077 == 0 for mode in logs.values()), logs
        again = stack_cmd(state, "up", "--workers", "3", "--beat")
        assert again.returncode == 0 and f"beat: running, pid {beat['pid']}" in again.stdout
    finally:
        down = stack_cmd(state, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "beat: stopped" in down.stdout
    assert not [p for p in pids if pid_alive(p)]
    after = json.loads(stack_cmd(state, "status", "--json").stdout)["services"]
    assert "beat" not in after and not any(s["alive"] for s in after.values())
    assert stack_cmd(state, "down", "--purge").returncode == 0
