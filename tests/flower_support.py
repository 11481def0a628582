"""A real Flower for the tests: ``celery -A pagila_tasks flower`` on a free port, basic auth on."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagila_stack.processes import flower_argv, pid_alive, spawn, terminate
from tests.support import ROOT, wait_for

FLOWER_USER = "user"
FLOWER_PASSWORD = secrets.token_hex(12)  # 24 characters, fresh per session

SPLIT_ROWS = {"PAGILA_SPLIT_ROWS": "4000"}
"""Settings for a run whose biggest table (public.rental) is copied in key ranges."""


def shown_name(key: str, unit: dict[str, Any]) -> str:
    """What Flower shows for one unit of ``pagila-submit status --json`` (``units``: key ->
    progress): ``copy public.rental #2of4`` for ``public.rental#2of4``, else ``copy TABLE``."""
    table = unit["table"]
    assert key.startswith(table), (key, table)
    part = key[len(table) :]
    return f"copy {table} {part}" if part else f"copy {table}"


def submit_run(iso: Any) -> tuple[str, str]:
    """``pagila-submit run --json`` in an ``isolated`` setting: the ids of its load and of its
    replication (two runs, one JSON line each), both succeeded."""
    proc = iso.submit("run", "--json")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(lines) == 2, (proc.stdout, proc.stderr[-2000:])
    assert [r["state"] for r in lines] == ["succeeded", "succeeded"], lines
    return lines[0]["run_id"], lines[1]["run_id"]


def control_names(load_id: str, run_id: str) -> set[str]:
    """What Flower shows for the control tasks of a ``run`` that succeeded: each names its run."""
    return {f"load {load_id}", f"prepare replication {run_id}", f"finish replication {run_id}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Flower:
    """One running Flower: its URL, credentials, pid and log."""

    port: int
    pid: int
    log: Path
    user: str = FLOWER_USER
    password: str = FLOWER_PASSWORD

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, auth: bool = True, timeout: float = 10) -> tuple[int, str]:
        """GET ``path``: status code and body (an HTTP error status is returned, not raised)."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - local http URL
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - local
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def get_json(self, path: str) -> Any:
        """GET ``path`` with credentials and parse the JSON body (fails on a non-200 answer)."""
        status, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def wait_succeeded(self, names: set[str], timeout: float = 90) -> dict[str, dict]:
        """Every task Flower lists (id -> task), once each of ``names`` is listed as SUCCESS.

        Flower keeps only what its event receiver heard, and a run's last events reach it a
        moment after the run ends; on a timeout the failure names what is missing, every task
        Flower has with its state, and the end of Flower's log."""
        seen: dict[str, dict] = {}

        def all_succeeded() -> dict[str, dict]:
            seen.update(self.get_json("/api/tasks"))
            done = {t.get("name") for t in seen.values() if t.get("state") == "SUCCESS"}
            return seen if names <= done else {}

        try:
            return wait_for(all_succeeded, timeout, "flower to list every task as SUCCESS", 1)
        except AssertionError as exc:
            done = {t.get("name") for t in seen.values() if t.get("state") == "SUCCESS"}
            listed = sorted((str(t.get("name")), str(t.get("state"))) for t in seen.values())
            raise AssertionError(
                f"{exc}; missing {sorted(names - done)}; flower has {listed}; "
                f"flower log: {self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        """The end of Flower's log, for failure messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive_workers(self) -> set[str]:
        """Node names Flower has seen alive through events (not through inspect)."""
        try:
            status, body = self.get("/api/workers?status=1", timeout=5)
        except OSError:
            return set()
        if status != 200:
            return set()
        return {name for name, alive in json.loads(body).items() if alive}


@contextmanager
def running_flower(
    worker_prefixes: tuple[str, ...] = ("w1", "w2"), env: dict[str, str] | None = None
) -> Iterator[Flower]:
    """Flower started with the test session's environment; ready once it sees the workers alive.

    Flower gets events only from the moment it connects, so a test starts it before submitting
    and waits here until every named worker's heartbeat has reached it.
    """
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="pagila-flower-")) / "flower.log"
    full_env = {
        **os.environ,
        **(env or {}),
        "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        "PYTHONUNBUFFERED": "1",
    }
    pid = spawn(flower_argv(port), log, full_env, cwd=ROOT)
    flower = Flower(port, pid, log)
    try:

        def ready() -> bool:
            assert pid_alive(pid), f"flower exited at start: {flower.log_tail()}"
            seen = {name.split("@", 1)[0] for name in flower.alive_workers()}
            return set(worker_prefixes) <= seen

        wait_for(ready, 60, f"flower to see workers {worker_prefixes}", interval=0.5)
        yield flower
    finally:
        terminate(pid, "flower", timeout=10)
