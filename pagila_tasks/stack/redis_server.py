"""One Redis server for the broker and results, on 127.0.0.1, data kept in its folder.

``appendonly yes`` writes every queued message to disk, so a restarted stack still has the
queue a crashed or stopped one left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from pagila_tasks.stack import StackError
from pagila_tasks.stack.processes import pid_alive, read_pid, wait_gone


class RedisServer:
    """``redis-server`` (``binary``) serving from ``dir`` on 127.0.0.1:``port``; safe to repeat."""

    def __init__(
        self,
        dir: Path,
        binary: Path,
        port: int,
        appendonly: bool = True,
        logfile: Path | None = None,
    ) -> None:
        self.dir = Path(dir).absolute()
        self.binary = Path(binary)
        self.port = port
        self.appendonly = appendonly
        self.logfile = Path(logfile or self.dir / "redis.log").absolute()
        self.pidfile = self.dir / "redis.pid"

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def pid(self) -> int | None:
        """The server's pid when it runs, else None."""
        pid = read_pid(self.pidfile)
        return pid if pid_alive(pid, "redis-server") else None

    def is_running(self) -> bool:
        """True when the server of this folder is alive."""
        return self.pid() is not None

    def _ping(self) -> bool:
        """One PING over a raw socket (redis-py would retry and slow the start-up poll)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 30) -> int:
        """Start daemonized if not running and wait until it answers PING; returns the pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        argv = [
            str(self.binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pidfile),
            "--logfile",
            str(self.logfile),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        deadline = time.monotonic() + timeout
        while result.returncode == 0 and time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and self._ping():
                return pid
            time.sleep(0.1)
        self.stop()
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise StackError(
            f"redis-server did not start on port {self.port} (see {self.logfile})"
            + (f": {detail[-1]}" if detail else "")
        )

    def stop(self, timeout: float = 30) -> None:
        """SHUTDOWN NOSAVE (the AOF already holds the data), SIGTERM then SIGKILL as fallback."""
        pid = self.pid()
        if pid is None:
            return
        # A raw socket: redis-py would retry the command on the disconnect SHUTDOWN causes.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn,
        ):
            conn.sendall(b"SHUTDOWN NOSAVE\r\n")
            conn.recv(256)
        if not wait_gone(pid, timeout / 2, "redis-server"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, timeout / 2, "redis-server"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not wait_gone(pid, 5, "redis-server"):
                    raise StackError(f"redis-server pid {pid} would not stop")
        self.pidfile.unlink(missing_ok=True)
