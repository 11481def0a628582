"""The benchmark's stack: two servers with the issue's settings, Redis, and two workers.

Every method runs in :attr:`BenchStack.env`: the stack's DSNs, passwords in a private
``PGPASSFILE`` (never on a command line), and the client tools of the servers' major version.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg2

import pagila_tasks
from bench import say
from pagila_stack.stack import Stack
from pagila_tasks.pg import pgtools

SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
}
"""Set with ALTER SYSTEM on both servers (the issue's settings); the rest are the stack's."""
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
"""Workers of ``ours``, one process slot each (``BENCH_WORKERS``, for a probe of more: the
tables in docs/benchmarks.md are all with two, the machine's cores)."""
SCRATCH = ("bench.pgpass", "bench-dump-dir", "bench-pgcopydb")
"""What the benchmark writes into the state folder; removed by :meth:`BenchStack.down`."""
DSN_VARS = {"source": "BENCH_SOURCE_DSN", "target": "BENCH_TARGET_DSN"}


def write_pgpass(path: Path, dsns: list[str]) -> Path:
    """A ``PGPASSFILE`` (mode 0600) for ``dsns``, so client tools never see a password."""
    lines = []
    for dsn in dsns:
        parts = urlsplit(dsn)
        fields = [
            parts.hostname or "",
            str(parts.port),
            parts.path.strip("/"),
            unquote(parts.username or ""),
            unquote(parts.password or ""),
        ]
        lines.append(":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


class BenchStack:
    """The stack in ``state_dir`` and what every method needs to reach it."""

    def __init__(self, state_dir: Path, servers: str, sql_dir: str | None, keep: bool) -> None:
        self.state_dir = state_dir.absolute()
        self.sql_dir = sql_dir
        self.keep = keep
        self.stack = Stack(self.state_dir, servers=servers, echo=lambda m: say(f"  stack: {m}"))
        self.env: dict[str, str] = {}
        self.tools: dict[str, str] = {}
        """pg_dump, pg_restore and psql of the servers' major version."""
        self.counts: dict[str, int] = {}
        """The source's row count per table: every run's target must equal it."""
        self.worker_pids: list[int] = []
        self.workers = WORKERS
        """How many worker processes run now (``restart_workers``' ``n``)."""

    def up(self) -> None:
        """Start the stack, apply SERVER_SETTINGS (restart), build the methods' environment."""
        say(f"stack in {self.state_dir}")
        # the code measured, compiled once as a wheel's install does (PYTHONDONTWRITEBYTECODE
        # would have every submitter and worker compile it at its start)
        compileall.compile_dir(Path(pagila_tasks.__file__).parent, quiet=1)
        self.stack.up(workers=0)
        for which in ("source", "target"):
            for name, value in SERVER_SETTINGS.items():
                self.admin(which, f"ALTER SYSTEM SET {name} = '{value}'")
            cluster = self.stack.cluster(which)
            cluster.stop()
            cluster.start()
        stack_env = self.stack.env()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAGILA_")},
            **{k: v for k, v in stack_env.items() if k.startswith("PAGILA_")},
            "PAGILA_STACK_DIR": str(self.state_dir),
            "PYTHONUNBUFFERED": "1",
        }
        if self.sql_dir:
            self.env["PAGILA_SQL_DIR"] = self.sql_dir
        self.env["BENCH_SOURCE_DSN"] = stack_env["PAGILA_SOURCE_DSN"]
        self.env["BENCH_TARGET_DSN"] = stack_env["PAGILA_TARGET_DSN"]
        pgpass = self.state_dir / "bench.pgpass"
        dsns = [stack_env["PAGILA_SOURCE_DSN"], stack_env["PAGILA_TARGET_DSN"]]
        self.env["PGPASSFILE"] = str(write_pgpass(pgpass, dsns))
        self.env["PGAPPNAME"] = "pagila-bench"
        pg_dump = pgtools.find_tool("pg_dump", self.server_major())
        self.tools = {
            "pg_dump": str(pg_dump),
            "pg_restore": str(pg_dump.with_name("pg_restore")),
            "psql": str(pg_dump.with_name("psql")),
        }
        self.env["PATH"] = f"{pg_dump.parent}:{self.env.get('PATH', '')}"
        self.env["PAGILA_PG_DUMP"] = str(pg_dump)

    def down(self) -> None:
        """Stop and purge the stack, unless ``--keep``."""
        if self.keep:
            say(f"--keep: the stack keeps running in {self.state_dir}")
            return
        for name in SCRATCH:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.stack.down(purge=True)

    def scratch(self, name: str) -> Path:
        """An emptied folder ``name`` (one of SCRATCH) in the state folder, for a method's files."""
        path = self.state_dir / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def conninfo(self, which: str) -> str:
        """The libpq conninfo of ``source`` or ``target``, without its password."""
        return pgtools.conninfo_and_env(self.env[DSN_VARS[which]])[0]

    @contextlib.contextmanager
    def cursor(self, which: str) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor as the project's (non-superuser) role of ``source`` or ``target``.

        The transaction commits when the block ends without error; the connection is closed.
        """
        conn = psycopg2.connect(self.env[DSN_VARS[which]])
        try:
            with conn, conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def admin(self, which: str, statement: str) -> list[tuple[Any, ...]]:
        """Rows of one statement run as the server's superuser, outside a transaction."""
        conn = psycopg2.connect(self.stack.admin_dsn(which))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def server_major(self) -> int:
        """The servers' major version (the client tools must match it)."""
        return int(self.admin("source", "SHOW server_version_num")[0][0]) // 10000

    def restart_workers(self, extra_env: dict[str, str] | None = None, n: int = WORKERS) -> None:
        """Fresh workers (so VmHWM is per run), ``n`` of them, waited for until Celery says
        ready."""
        self.stack.stop_workers()
        self.workers = n
        self.stack.reset_started()
        env = {k: v for k, v in self.env.items() if k.startswith("PAGILA_") or k == "PATH"}
        self.worker_pids = self.stack.start_workers(n, extra_env={**env, **(extra_env or {})})
        self.stack.wait_workers_ready()

    def worker_roots(self) -> list[int]:
        """The workers' main pids: the roots of the process trees whose memory is ours."""
        return list(self.worker_pids)

    def worker_logs(self) -> list[Path]:
        """The workers' log files, ``w1.log``, ``w2.log``."""
        return [self.stack.logs / f"w{i}.log" for i in range(1, self.workers + 1)]

    def submit_argv(self) -> list[str]:
        """``pagila-submit`` beside this interpreter, else the module."""
        script = Path(sys.executable).with_name("pagila-submit")
        if script.exists():
            return [str(script)]
        return [sys.executable, "-m", "pagila_tasks.cli.submit"]
