"""The whole local stack in one state folder: what runs, on which port, with which secrets.

Layout of the state folder (default ``.stack/``; folders 0700, files 0600, see :mod:`.access`)::

    stack.json         binaries, ports and Redis db chosen (no secrets)
    passwords.json     role passwords and the Redis password, mode 0600
    flower.json        Flower basic-auth credentials, mode 0600
    pg/source pg/target          cluster data folders
    sockets/source sockets/target  unix socket folders
    redis/             Redis data (appendonly), its config (with the password) and pid file
    run/               pid files of workers, Flower and beat; beat's schedule
    logs/<name>.log    one log per process

Secrets: :mod:`.credentials`; Celery processes: :mod:`.celery_processes`; servers:
:mod:`.postgres` and :mod:`.redis_server`. This module ties them together.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pagila_stack import StackError
from pagila_stack.access import prepare_state_dir
from pagila_stack.binaries import ServerBinaries, recorded_or_found
from pagila_stack.celery_processes import (
    FLOWER_NEEDLE,
    CeleryProcesses,
    flower_env,
    worker_env,
)
from pagila_stack.credentials import FLOWER_USER, REDIS_KEY, ROLES, Credentials
from pagila_stack.ports import DEFAULT_PORTS, pick_port, port_free
from pagila_stack.postgres import PostgresCluster
from pagila_stack.processes import check_started, wait_ready
from pagila_stack.redis_server import RedisServer

__all__ = ["DATABASE", "DEFAULT_PORTS", "FLOWER_USER", "ROLES", "Stack", "pick_port", "port_free"]

log = logging.getLogger(__name__)

DATABASE = "pagila"
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
        self.credentials = Credentials(self.state_dir, self._say)
        self.apps = CeleryProcesses(self.run_dir, self.logs, self._say)

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
        """Create the folders private (run again on every ``up`` to tighten older ones)."""
        prepare_state_dir(self.state_dir, ("pg", "sockets", "logs"), ("run", "run/workers"))

    def _binaries(self, state: dict[str, Any]) -> ServerBinaries:
        """The recorded binaries when still usable, so a data folder keeps its PG version."""
        return recorded_or_found(state.get("binaries") or {}, self.servers)

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
        """The Redis server object, with the stack's password (nothing is started)."""
        state = self._load()
        if binary is None:
            binary = Path(state.get("binaries", {}).get("redis_server", "redis-server"))
        port = state.get("ports", {}).get("redis", DEFAULT_PORTS["redis"])
        return RedisServer(
            self.state_dir / "redis",
            binary,
            port,
            logfile=self.logs / "redis.log",
            password=self.credentials.redis_password(),
        )

    def up(
        self, workers: int = 2, flower: bool = False, redis_db: int = 0, beat: bool = False
    ) -> None:
        """Start whatever is not running; what runs is left alone and reported.

        Secrets are generated on the first call only. Workers named ``w1..w<workers>`` are
        ensured; workers numbered above ``workers`` are stopped. ``flower`` and ``beat`` add
        those processes; without them, running ones are left alone.
        """
        state = self._load()
        binaries = self._binaries(state)
        self._make_state_dir()
        passwords = self.credentials.passwords(create=True)
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
            cluster = self._up_cluster(which, binaries, ports, claimed)
            self._save(state)
            cluster.ensure_role_db(ROLES[which], passwords[ROLES[which]], DATABASE)
        self._up_redis(binaries.redis_server, ports, claimed)
        self._save(state)

        self.reset_started()
        self.apps.stop_workers_above(workers)
        self.start_workers(workers)
        if flower:
            self._start_flower(state, claimed)
        if beat:
            self.apps.ensure_beat(self._child_env())
        if self.apps.spawned:
            check_started(self.apps.spawned, self.logs)
            self.wait_workers_ready()

    def _up_cluster(
        self, which: str, binaries: ServerBinaries, ports: dict[str, int], claimed: set[int]
    ) -> PostgresCluster:
        """Start one cluster unless it runs (refusing data of another major); the cluster."""
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
                f"{which}: started PostgreSQL {binaries.pg_major}, pid {pid}, port {cluster.port}"
            )
        claimed.add(cluster.port)
        ports[which] = cluster.port
        return cluster

    def _up_redis(self, binary: Path, ports: dict[str, int], claimed: set[int]) -> None:
        """Start Redis; one from an older stack that has no password is restarted with one.

        The Celery processes of such a stack hold a URL without the password, so they are
        stopped with it and started again by ``up``.
        """
        server = self.redis(binary)
        pid = server.pid()
        if pid is not None and server.open_to_anyone():
            self._say(
                f"redis: pid {pid} answers without a password (older stack): restarting it "
                "with one, and the workers, Flower and beat with it"
            )
            self.apps.stop_all()
            server.stop()
            pid = None
        if pid is not None:
            self._say(f"redis: running, pid {pid}, port {server.port}")
        else:
            server.port = pick_port(ports.get("redis", DEFAULT_PORTS["redis"]), claimed)
            pid = server.start()
            self._say(f"redis: started, pid {pid}, port {server.port}")
        claimed.add(server.port)
        ports["redis"] = server.port

    # -- workers, flower and beat --------------------------------------------------------

    def _child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Workers' and beat's environment: ours, the stack's ``PAGILA_*``, then ``extra``."""
        return worker_env(os.environ, self.env(), extra)

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
        return self.apps.start_workers(n, self._child_env(extra_env), queues, prefix)

    def wait_workers_ready(self, timeout: float = 90.0) -> None:
        """Wait until each worker started since ``up`` began (or the last
        :meth:`reset_started`) logs that it is ready; see :func:`processes.wait_ready`."""
        wait_ready(self.apps.spawned, self.apps.started_workers(), self.logs, timeout)

    def reset_started(self) -> None:
        """Forget which processes were started, so the next wait covers only new ones."""
        self.apps.reset()

    def stop_workers(self, timeout: float = 20) -> None:
        """Stop every worker: SIGTERM (warm shutdown), SIGKILL of its group after ``timeout``."""
        self.apps.stop_workers(timeout)

    def _start_flower(self, state: dict[str, Any], claimed: set[int]) -> None:
        user, password = self.credentials.flower(create=True) or (FLOWER_USER, "")
        ports = state["ports"]
        pid = self.apps.running("flower", FLOWER_NEEDLE)
        if pid is not None:
            self._say(f"flower: running, pid {pid}, http://127.0.0.1:{ports.get('flower')}/")
            return
        port = pick_port(ports.get("flower", DEFAULT_PORTS["flower"]), claimed)
        env = flower_env(os.environ, self.env()["PAGILA_REDIS_URL"], f"{user}:{password}")
        pid = self.apps.start_flower(port, env)
        ports["flower"] = port
        self._save(state)
        self._say(f"flower: started read-only, pid {pid}, http://127.0.0.1:{port}/")

    # -- down, env, status ---------------------------------------------------------------

    def down(self, purge: bool = False) -> None:
        """Stop everything this state folder started and check no pid is left.

        Data stays on disk unless ``purge``, which deletes only the stack's own files.
        """
        if not self.state_dir.is_dir():
            return
        self.apps.stop_all()
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
        passwords, as workers connect), ``PAGILA_REDIS_URL`` (with the Redis password), and
        ``FLOWER_BASIC_AUTH`` when Flower credentials exist.
        """
        passwords = self.credentials.passwords(create=False)
        state = self._load()
        ports = state.get("ports", {})
        if not all(k in ports for k in ("source", "target", "redis")):
            raise StackError(f"no stack in {self.state_dir}: run `pagila-stack up` first")
        if not passwords.get(REDIS_KEY):
            raise StackError(
                f"no Redis password in {self.state_dir} (made by an older version): run "
                "`pagila-stack up`, which adds one and restarts Redis with it"
            )
        out = {}
        for which, var in (("source", "PAGILA_SOURCE_DSN"), ("target", "PAGILA_TARGET_DSN")):
            role = ROLES[which]
            out[var] = (
                f"postgresql://{role}:{quote(passwords[role], safe='')}"
                f"@127.0.0.1:{ports[which]}/{DATABASE}"
            )
        out["PAGILA_REDIS_URL"] = (
            f"redis://:{quote(passwords[REDIS_KEY], safe='')}"
            f"@127.0.0.1:{ports['redis']}/{state.get('redis_db', 0)}"
        )
        creds = self.credentials.flower(create=False)
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
        services.update(self.apps.status(ports))
        for name, entry in services.items():
            entry["log"] = str(self.logs / f"{name}.log")
        return {
            "state_dir": str(self.state_dir),
            "servers": state.get("binaries", {}).get("kind"),
            "services": services,
        }
