"""The whole local stack in one state folder: what runs, on which port, with which secrets.

Layout of the state folder (default ``.stack/``)::

    stack.json         binaries, ports and Redis db chosen (no secrets)
    passwords.json     role passwords, mode 0600
    flower.json        Flower basic-auth credentials, mode 0600
    pg/source pg/target          cluster data folders
    sockets/source sockets/target  unix socket folders, mode 0700
    redis/             Redis data (appendonly) and pid file
    run/               pid files of workers and Flower
    logs/<name>.log    one log per process
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pagila_tasks.stack import StackError
from pagila_tasks.stack.binaries import ServerBinaries, find_servers, tool_version
from pagila_tasks.stack.postgres import PostgresCluster, add_mode, make_traversable
from pagila_tasks.stack.processes import (
    check_started,
    flower_argv,
    pid_alive,
    project_dir,
    read_pid,
    spawn,
    terminate,
    worker_argv,
    write_pid,
)
from pagila_tasks.stack.redis_server import RedisServer

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"source": 5433, "target": 5444, "redis": 6379, "flower": 5555}
ROLES = {"source": "pagila", "target": "pagila_tgt"}
DATABASE = "pagila"
FLOWER_USER = "admin"
CLUSTERS = ("source", "target")
_PURGEABLE = (
    "pg",
    "sockets",
    "redis",
    "run",
    "logs",
    "stack.json",
    "passwords.json",
    "flower.json",
    ".gitignore",
)


def port_free(port: int) -> bool:
    """True when 127.0.0.1:``port`` can be bound (SO_REUSEADDR, as the servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, claimed: set[int] | frozenset[int] = frozenset()) -> int:
    """``preferred`` if free, else a free port from the kernel; never one in ``claimed``."""
    if preferred not in claimed and port_free(preferred):
        return preferred
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in claimed:
            return port
    raise StackError(f"no free TCP port found on 127.0.0.1 (wanted {preferred})")


def _write_secret(path: Path, data: dict[str, str]) -> None:
    """Write JSON readable by the owner only, created 0600 so it is never briefly wider."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Stack:
    """The local stack kept in ``state_dir``; every method is safe to repeat.

    ``servers`` is ``auto``, ``system`` or ``embedded`` (see :mod:`.binaries`). ``echo``
    receives one-line progress messages (the CLI prints them); without it they go to the
    logger, except the Flower password, which is then only in ``flower.json``.
    """

    def __init__(
        self,
        state_dir: Path,
        servers: str = "auto",
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.servers = servers
        self._echo = echo
        self.logs = self.state_dir / "logs"
        self.run_dir = self.state_dir / "run"
        self._spawned: dict[str, int] = {}

    # -- state --------------------------------------------------------------------------

    def _say(self, message: str, secret: bool = False) -> None:
        if self._echo is not None:
            self._echo(message)
        elif not secret:
            log.info("%s", message)

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        path = self.state_dir / "stack.json"
        tmp = path.with_name("stack.json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def _make_state_dir(self) -> None:
        """Create the folder private (0700); under root, o+x so ``pagila-pg`` can traverse it."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in (self.logs, self.run_dir / "workers"):
            sub.mkdir(parents=True, exist_ok=True)
        gitignore = self.state_dir / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("# Everything here is local state of pagila-stack.\n*\n")
        if os.geteuid() == 0:
            add_mode(self.state_dir, stat.S_IXOTH)
            make_traversable(self.state_dir)

    def _passwords(self, create: bool) -> dict[str, str]:
        path = self.state_dir / "passwords.json"
        if path.exists():
            return json.loads(path.read_text())
        if not create:
            raise StackError(f"no stack in {self.state_dir}: run `pagila-stack up` first")
        passwords = {role: secrets.token_urlsafe(24) for role in ROLES.values()}
        _write_secret(path, passwords)
        return passwords

    def _flower_credentials(self, create: bool) -> tuple[str, str] | None:
        path = self.state_dir / "flower.json"
        if path.exists():
            data = json.loads(path.read_text())
            return data["user"], data["password"]
        if not create:
            return None
        password = secrets.token_urlsafe(18)
        _write_secret(path, {"user": FLOWER_USER, "password": password})
        self._say(
            f"flower: login {FLOWER_USER} / {password} (shown once; kept in {path})", secret=True
        )
        return FLOWER_USER, password

    def _binaries(self, state: dict[str, Any]) -> ServerBinaries:
        """The recorded binaries when still usable, so a data folder keeps its PG version."""
        rec = state.get("binaries") or {}
        if rec and self.servers in ("auto", rec.get("kind")):
            bindir, redis = Path(rec["pg_bindir"]), Path(rec["redis_server"])
            version = tool_version(str(bindir / "postgres"))
            if version and os.access(redis, os.X_OK):
                return ServerBinaries(rec["kind"], bindir, version[0], redis)
        return find_servers(self.servers)

    # -- servers ------------------------------------------------------------------------

    def cluster(self, which: str, bindir: Path | None = None) -> PostgresCluster:
        """The ``source`` or ``target`` cluster object (nothing is started)."""
        if which not in CLUSTERS:
            raise StackError(f"cluster must be source or target, got {which!r}")
        state = self._load()
        if bindir is None:
            bindir = Path(state.get("binaries", {}).get("pg_bindir", "/nonexistent"))
        port = state.get("ports", {}).get(which, DEFAULT_PORTS[which])
        cluster = PostgresCluster(
            self.state_dir / "pg" / which,
            bindir,
            port,
            socket_dir=self.state_dir / "sockets" / which,
            logfile=self.logs / f"{which}.log",
        )
        cluster.port = cluster.running_port() if cluster.is_running() else port
        return cluster

    def redis(self, binary: Path | None = None) -> RedisServer:
        """The Redis server object (nothing is started)."""
        state = self._load()
        if binary is None:
            binary = Path(state.get("binaries", {}).get("redis_server", "redis-server"))
        port = state.get("ports", {}).get("redis", DEFAULT_PORTS["redis"])
        return RedisServer(self.state_dir / "redis", binary, port, logfile=self.logs / "redis.log")

    def up(self, workers: int = 2, flower: bool = False, redis_db: int = 0) -> None:
        """Start whatever is not running; what runs is left alone and reported.

        Secrets are generated on the first call only. Workers named ``w1..w<workers>`` are
        ensured; workers numbered above ``workers`` are stopped.
        """
        state = self._load()
        binaries = self._binaries(state)
        self._make_state_dir()
        passwords = self._passwords(create=True)
        state["binaries"] = {
            "kind": binaries.kind,
            "pg_bindir": str(binaries.pg_bindir),
            "pg_major": binaries.pg_major,
            "redis_server": str(binaries.redis_server),
        }
        ports: dict[str, int] = state.setdefault("ports", {})
        state["redis_db"] = redis_db
        claimed: set[int] = set()
        self._save(state)

        for which in CLUSTERS:
            cluster = self.cluster(which, binaries.pg_bindir)
            major = cluster.data_major()
            if major is not None and major != binaries.pg_major:
                raise StackError(
                    f"{which} data in {cluster.datadir} is PostgreSQL {major} but the "
                    f"{binaries.kind} server is {binaries.pg_major}: set PAGILA_STACK_SERVERS "
                    "to match or run `pagila-stack down --purge`"
                )
            pid = cluster.pid()
            if pid is not None:
                self._say(f"{which}: running, pid {pid}, port {cluster.port}")
            else:
                cluster.port = pick_port(ports.get(which, DEFAULT_PORTS[which]), claimed)
                cluster.init()
                pid = cluster.start()
                self._say(
                    f"{which}: started PostgreSQL {binaries.pg_major}, pid {pid}, "
                    f"port {cluster.port}"
                )
            claimed.add(cluster.port)
            ports[which] = cluster.port
            self._save(state)
            cluster.ensure_role_db(ROLES[which], passwords[ROLES[which]], DATABASE)

        server = self.redis(binaries.redis_server)
        pid = server.pid()
        if pid is not None:
            self._say(f"redis: running, pid {pid}, port {server.port}")
        else:
            server.port = pick_port(ports.get("redis", DEFAULT_PORTS["redis"]), claimed)
            pid = server.start()
            self._say(f"redis: started, pid {pid}, port {server.port}")
        claimed.add(server.port)
        ports["redis"] = server.port
        self._save(state)

        self._spawned = {}
        self._stop_workers_above(workers)
        self.start_workers(workers)
        if flower:
            self._start_flower(state, claimed)
        if self._spawned:
            check_started(self._spawned, self.logs)

    # -- workers and flower --------------------------------------------------------------

    def _worker_pidfiles(self) -> list[Path]:
        return sorted((self.run_dir / "workers").glob("*.pid"))

    def _child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        stack_env = {k: v for k, v in self.env().items() if k.startswith("PAGILA_")}
        return {**os.environ, **stack_env, "PYTHONUNBUFFERED": "1", **(extra or {})}

    def start_workers(
        self,
        n: int,
        extra_env: dict[str, str] | None = None,
        queues: str = "copy,control",
        prefix: str = "w",
    ) -> list[int]:
        """Ensure workers ``<prefix>1..<prefix>n`` run; returns their pids.

        Each is ``celery -A pagila_tasks worker -n <name>@%h --concurrency 1 -Q <queues>``
        with the environment + the stack's ``PAGILA_*`` + ``extra_env``. A worker already
        running keeps its environment: call :meth:`stop_workers` first for fresh ones.
        """
        self._make_state_dir()
        pids = []
        env = self._child_env(extra_env)
        for i in range(1, n + 1):
            name = f"{prefix}{i}"
            pidfile = self.run_dir / "workers" / f"{name}.pid"
            pid = read_pid(pidfile)
            if pid_alive(pid, "celery"):
                self._say(f"{name}: running, pid {pid}")
            else:
                pid = spawn(
                    worker_argv(name, queues), self.logs / f"{name}.log", env, cwd=project_dir()
                )
                write_pid(pidfile, pid)
                self._spawned[name] = pid
                self._say(f"{name}: started worker, pid {pid}")
            pids.append(pid)
        return pids

    def _stop_pidfile(self, pidfile: Path, timeout: float) -> None:
        pid = read_pid(pidfile)
        if pid is not None and not terminate(pid, "celery", timeout):
            raise StackError(f"{pidfile.stem}: pid {pid} would not stop")
        pidfile.unlink(missing_ok=True)
        if pid is not None:
            self._say(f"{pidfile.stem}: stopped, pid {pid}")

    def _stop_workers_above(self, n: int, prefix: str = "w") -> None:
        for pidfile in self._worker_pidfiles():
            number = pidfile.stem[len(prefix) :]
            if pidfile.stem.startswith(prefix) and number.isdigit() and int(number) > n:
                self._stop_pidfile(pidfile, timeout=20)

    def stop_workers(self, timeout: float = 20) -> None:
        """Stop every worker: SIGTERM (warm shutdown), SIGKILL of its group after ``timeout``."""
        for pidfile in self._worker_pidfiles():
            self._stop_pidfile(pidfile, timeout)

    def _start_flower(self, state: dict[str, Any], claimed: set[int]) -> None:
        user, password = self._flower_credentials(create=True) or (FLOWER_USER, "")
        pidfile = self.run_dir / "flower.pid"
        pid = read_pid(pidfile)
        ports = state["ports"]
        if pid_alive(pid, "flower"):
            self._say(f"flower: running, pid {pid}, http://127.0.0.1:{ports.get('flower')}/")
            return
        port = pick_port(ports.get("flower", DEFAULT_PORTS["flower"]), claimed)
        env = self._child_env({"FLOWER_BASIC_AUTH": f"{user}:{password}"})
        pid = spawn(flower_argv(port), self.logs / "flower.log", env, cwd=project_dir())
        write_pid(pidfile, pid)
        self._spawned["flower"] = pid
        ports["flower"] = port
        self._save(state)
        self._say(f"flower: started, pid {pid}, http://127.0.0.1:{port}/")

    # -- down, env, status ---------------------------------------------------------------

    def down(self, purge: bool = False) -> None:
        """Stop everything this state folder started and check no pid is left.

        Data stays on disk unless ``purge``, which deletes only the stack's own files.
        """
        if not self.state_dir.is_dir():
            return
        self.stop_workers()
        flower_pid = self.run_dir / "flower.pid"
        if flower_pid.exists():
            self._stop_pidfile(flower_pid, timeout=10)
        server = self.redis()
        pid = server.pid()
        if pid is not None:
            server.stop()
            self._say(f"redis: stopped, pid {pid}")
        for which in reversed(CLUSTERS):
            cluster = self.cluster(which)
            pid = cluster.pid()
            if pid is not None:
                if not cluster.bindir.is_dir():
                    cluster.bindir = self._binaries(self._load()).pg_bindir
                cluster.stop()
                self._say(f"{which}: stopped, pid {pid}")
        left = {name: s["pid"] for name, s in self.status()["services"].items() if s["alive"]}
        if left:
            raise StackError(f"still running after down: {left}")
        if purge:
            for name in _PURGEABLE:
                path = self.state_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            if not any(self.state_dir.iterdir()):
                self.state_dir.rmdir()
            self._say(f"purged {self.state_dir}")

    def env(self) -> dict[str, str]:
        """The variables a worker or client needs to reach this stack.

        ``PAGILA_SOURCE_DSN``, ``PAGILA_TARGET_DSN`` (TCP on 127.0.0.1 with the generated
        passwords, as workers connect), ``PAGILA_REDIS_URL``, and ``FLOWER_BASIC_AUTH`` when
        Flower credentials exist.
        """
        passwords = self._passwords(create=False)
        state = self._load()
        ports = state.get("ports", {})
        if not all(k in ports for k in ("source", "target", "redis")):
            raise StackError(f"no stack in {self.state_dir}: run `pagila-stack up` first")
        out = {}
        for which, var in (("source", "PAGILA_SOURCE_DSN"), ("target", "PAGILA_TARGET_DSN")):
            role = ROLES[which]
            out[var] = (
                f"postgresql://{role}:{quote(passwords[role], safe='')}"
                f"@127.0.0.1:{ports[which]}/{DATABASE}"
            )
        out["PAGILA_REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/{state.get('redis_db', 0)}"
        creds = self._flower_credentials(create=False)
        if creds:
            out["FLOWER_BASIC_AUTH"] = f"{creds[0]}:{creds[1]}"
        return out

    def admin_dsn(self, which: str) -> str:
        """Superuser (``pagila_admin``) DSN to database pagila over the unix socket of ``which``."""
        return self.cluster(which).admin_dsn(DATABASE)

    def status(self) -> dict[str, Any]:
        """``{"state_dir", "servers", "services": {name: {"pid", "port", "alive", "log"}}}``."""
        state = self._load()
        ports = state.get("ports", {})
        services: dict[str, dict[str, Any]] = {}
        for which in CLUSTERS:
            cluster = self.cluster(which)
            pid = cluster.pid()
            services[which] = {
                "pid": pid,
                "port": cluster.port if pid else ports.get(which),
                "alive": pid is not None,
            }
        redis_pid = self.redis().pid()
        services["redis"] = {
            "pid": redis_pid,
            "port": ports.get("redis"),
            "alive": redis_pid is not None,
        }
        for pidfile in self._worker_pidfiles():
            pid = read_pid(pidfile)
            services[pidfile.stem] = {"pid": pid, "port": None, "alive": pid_alive(pid, "celery")}
        flower_pidfile = self.run_dir / "flower.pid"
        if flower_pidfile.exists():
            pid = read_pid(flower_pidfile)
            services["flower"] = {
                "pid": pid,
                "port": ports.get("flower"),
                "alive": pid_alive(pid, "flower"),
            }
        for name, entry in services.items():
            entry["log"] = str(self.logs / f"{name}.log")
        return {
            "state_dir": str(self.state_dir),
            "servers": state.get("binaries", {}).get("kind"),
            "services": services,
        }
