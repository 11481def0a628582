"""Flower never runs unauthenticated: real Flower processes behind the guard (its rules are
tested in tests/unit/test_flower_guard.py)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagila_tasks.cli.flower_guard import (
    MIN_PASSWORD_CHARS,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = "admin:" + "x" * MIN_PASSWORD_CHARS
CELERY = "/venv/bin/celery"


# -- real Flower processes -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any FLOWER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _flower_argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "pagila_tasks",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]


def test_real_flower_without_auth_exits_2() -> None:
    """Flower started without FLOWER_BASIC_AUTH exits 2 and prints why on stderr."""
    proc = subprocess.run(
        _flower_argv(_free_port()),
        env=_clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "flower: refusing to start without authentication" in proc.stderr
    assert "FLOWER_BASIC_AUTH=user:password" in proc.stderr


@pytest.fixture
def throwaway_redis() -> Iterator[str]:
    """A private redis-server on a free port, without persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("throwaway redis-server did not start")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)


def _status(url: str, method: str = "GET", auth: str | None = None) -> int:
    """The HTTP status of one request (an error status is returned, not raised)."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)  # noqa: S310 - local http URL
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - local http URL
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@contextlib.contextmanager
def _running_flower(redis_url: str, log: Path, **flower_env: str) -> Iterator[str]:
    """A real Flower on a free port with ``flower_env``; its base URL. Stopped on exit."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = _clean_env(PAGILA_REDIS_URL=redis_url, **flower_env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _flower_argv(port),
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while _healthcheck(base) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"flower did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        _stop(proc)


@pytest.mark.slow
def test_real_flower_with_auth_guards_its_api(throwaway_redis: str, tmp_path: Path) -> None:
    """With FLOWER_BASIC_AUTH, reads and control calls need credentials; with them reads work."""
    with _running_flower(throwaway_redis, tmp_path / "flower.log", FLOWER_BASIC_AUTH=GOOD) as base:
        assert _status(f"{base}/api/tasks") == 401
        assert _status(f"{base}/api/task/send-task/pagila.load", "POST") == 401
        assert _status(f"{base}/api/worker/shutdown/x", "POST") == 401
        assert _status(f"{base}/api/task/revoke/x", "POST") == 401
        assert _status(f"{base}/", auth="admin:wrong-password-123") == 401
        assert _status(f"{base}/api/tasks", auth="admin:wrong-password-123") == 401
        assert _status(f"{base}/api/workers", auth=GOOD) == 200


@pytest.mark.slow
def test_real_flower_read_only_refuses_control(throwaway_redis: str, tmp_path: Path) -> None:
    """FLOWER_READ_ONLY=true (the compose default) turns authenticated control calls into 403.

    It also pins the documented gap: /metrics answers without credentials.
    """
    with _running_flower(
        throwaway_redis, tmp_path / "flower.log", FLOWER_BASIC_AUTH=GOOD, FLOWER_READ_ONLY="true"
    ) as base:
        assert _status(f"{base}/api/task/revoke/x", "POST", auth=GOOD) == 403
        assert _status(f"{base}/api/task/send-task/pagila.load", "POST", auth=GOOD) == 403
        assert _status(f"{base}/api/worker/shutdown/x", "POST", auth=GOOD) == 403
        assert _status(f"{base}/api/workers", auth=GOOD) == 200
        assert _status(f"{base}/metrics") == 200


def _healthcheck(base: str) -> int:
    """Flower's /healthcheck status, 0 while nothing listens."""
    try:
        return _status(f"{base}/healthcheck")
    except OSError:
        return 0
