"""Flower never runs unauthenticated: the guard's rules, and real Flower processes behind it."""

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
    check_flower_auth,
    guard,
    is_celery,
    subcommand,
)

ROOT = Path(__file__).resolve().parents[1]
GOOD = "admin:" + "x" * MIN_PASSWORD_CHARS
CELERY = "/venv/bin/celery"


# -- unit tests of the rules ---------------------------------------------------------------


def test_basic_auth_with_long_password_passes() -> None:
    """user:password with a password of at least 12 characters is accepted."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": GOOD}) is None


def test_several_basic_auth_entries_are_each_checked() -> None:
    """A comma-separated list passes only when every entry is user:long-password."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": f"{GOOD},ops:{'y' * 20}"}) is None
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": f"{GOOD},ops:short"})
    assert error is not None and "entry 2" in error


def test_missing_auth_is_refused() -> None:
    """No FLOWER_BASIC_AUTH and no OAuth: refused, and the message names the variable."""
    error = check_flower_auth(["--port=5555"], {})
    assert error is not None and "FLOWER_BASIC_AUTH=user:password" in error


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("adminonly", "user:password"),
        (":" + "x" * 20, "user:password"),
        ("admin:" + "x" * (MIN_PASSWORD_CHARS - 1), "shorter than 12"),
        ("admin:", "shorter than 12"),
        ("admin:change-me-flower-password", "sample password from .env.example"),
    ],
)
def test_bad_basic_auth_is_refused(value: str, needle: str) -> None:
    """Empty values, entries without user or colon, short passwords and .env.example's sample
    password are refused."""
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": value})
    assert error is not None and needle in error


def test_password_may_contain_colons() -> None:
    """Only the first colon separates user from password, as in HTTP basic auth."""
    assert check_flower_auth([], {"FLOWER_BASIC_AUTH": "admin:abc:def:ghi:jkl"}) is None


def test_oauth_needs_all_three_settings() -> None:
    """FLOWER_AUTH is accepted only with key, secret and redirect URI all set."""
    env = {
        "FLOWER_AUTH": r".*@example\.com",
        "FLOWER_OAUTH2_KEY": "k",
        "FLOWER_OAUTH2_SECRET": "s",
        "FLOWER_OAUTH2_REDIRECT_URI": "https://flower.example.com/login",
    }
    assert check_flower_auth([], env) is None
    del env["FLOWER_OAUTH2_SECRET"]
    error = check_flower_auth([], env)
    assert error is not None and "FLOWER_OAUTH2_SECRET" in error


@pytest.mark.parametrize("arg", ["--basic_auth=admin:" + "x" * 20, "--basic-auth=a:b"])
def test_secrets_on_the_command_line_are_refused(arg: str) -> None:
    """Credentials as options would show in ps, so they are refused even when valid."""
    error = check_flower_auth([arg], {"FLOWER_BASIC_AUTH": GOOD})
    assert error is not None and "FLOWER_BASIC_AUTH" in error and "ps" in error


def test_unauthenticated_api_switch_is_refused() -> None:
    """FLOWER_UNAUTHENTICATED_API=true is refused, whatever else is set."""
    error = check_flower_auth([], {"FLOWER_BASIC_AUTH": GOOD, "FLOWER_UNAUTHENTICATED_API": "1"})
    assert error is not None and "FLOWER_UNAUTHENTICATED_API" in error


def test_subcommand_skips_global_options_and_their_values() -> None:
    """The subcommand is the first word that is neither an option nor an option's value."""
    assert subcommand(["-A", "pagila_tasks", "flower", "--port=5555"]) == "flower"
    assert subcommand(["--app=pagila_tasks", "-b", "redis://x", "flower"]) == "flower"
    assert subcommand(["-A", "flower", "worker"]) == "worker"
    assert subcommand(["-A", "pagila_tasks", "worker", "-n", "flower@%h"]) == "worker"
    assert subcommand(["--help"]) is None


def test_only_celery_programs_are_guarded() -> None:
    """The celery script and python -m celery are recognised; pytest or pagila-submit are not."""
    assert is_celery("/venv/bin/celery")
    assert is_celery("/usr/lib/python3/site-packages/celery/__main__.py")
    assert not is_celery("/venv/bin/pytest")
    assert not is_celery("/venv/bin/pagila-submit")


def test_guard_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unauthenticated Flower command line exits 2 with a single stderr line."""
    with pytest.raises(SystemExit) as exc:
        guard([CELERY, "-A", "pagila_tasks", "flower", "--port=5555"], {})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flower: ") and "FLOWER_BASIC_AUTH" in err


def test_guard_ignores_other_commands() -> None:
    """Workers, inspect, and non-Celery programs that mention flower start without checks."""
    guard([CELERY, "-A", "pagila_tasks", "worker", "-Q", "copy,control"], {})
    guard([CELERY, "-A", "pagila_tasks", "inspect", "ping"], {})
    guard(["/venv/bin/pytest", "-k", "flower"], {})
    guard([CELERY, "-A", "pagila_tasks", "flower"], {"FLOWER_BASIC_AUTH": GOOD})


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
