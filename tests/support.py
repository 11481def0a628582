"""Helpers shared by the tests: running commands, reading databases, waiting for things."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
SHARED_PAGILA = ROOT.parent / "shared" / "pagila"
WHEEL_SOURCES = ("pyproject.toml", "README.md", "celeryconfig.py", "pagila_tasks", "sql")
"""What the wheel is built from: workers/Dockerfile's builder stage copies exactly these."""


def submit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``pagila-submit`` as a user would (a subprocess), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pagila_tasks.cli.submit", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def submit_json(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, dict[str, Any]]:
    """``pagila-submit ... --json``: exit code and the parsed summary object."""
    proc = submit(*args, "--json", env=env, timeout=timeout)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except (ValueError, IndexError):
        raise AssertionError(f"not JSON: {proc.stdout!r} / {proc.stderr!r}") from None
    return proc.returncode, data


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one query on a fresh connection."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    """The single value of a query."""
    return query(dsn, sql, params)[0][0]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate`` returns something truthy, or fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def redis_client() -> redis.Redis:
    """A client on the test Redis database."""
    return redis.Redis.from_url(os.environ["PAGILA_REDIS_URL"])


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")
