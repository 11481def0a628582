"""A stall watchdog for COPY streams: a server that stops answering becomes an error, not a hang.

Keepalives catch a dead host, but not a paused server process: the kernel still answers for it,
so a COPY would wait forever. The watchdog watches the bytes flowing through the spool; when
nothing moves for ``PAGILA_STALL_TIMEOUT`` seconds it shuts the connection's socket down, libpq
reports a lost connection, and the task retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import IO, Any, Protocol

log = logging.getLogger(__name__)


class Flow(Protocol):
    """Bytes moving through a copy: how many so far, and when they last moved."""

    last: float
    moved: int


class Watched:
    """A file wrapper that records when data last moved through ``read``/``write``, and how
    many bytes did (the copy's live progress)."""

    def __init__(self, inner: IO[bytes] | Any) -> None:
        self.inner = inner
        self.last = time.monotonic()
        self.moved = 0

    def write(self, data: Any) -> int:
        self.last = time.monotonic()
        self.moved += len(data)
        return self.inner.write(data)

    def read(self, size: int = -1) -> bytes:
        self.last = time.monotonic()
        data = self.inner.read(size)
        self.moved += len(data)
        return data


class Watchdog:
    """Shuts ``conn``'s socket down when ``watched`` sees no data for ``timeout`` seconds."""

    def __init__(self, conn: Any, watched: Flow, timeout: float, what: str) -> None:
        self.conn = conn
        self.watched = watched
        self.timeout = timeout
        self.what = what
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"watchdog {what}", daemon=True)

    def _watch(self) -> None:
        interval = min(max(self.timeout / 5, 0.2), 5.0)
        while not self._stop.wait(interval):
            if time.monotonic() - self.watched.last > self.timeout:
                self.fired = True
                log.error("%s: no data for %.0f s; closing the connection", self.what, self.timeout)
                with contextlib.suppress(OSError):
                    sock = socket.socket(fileno=os.dup(self.conn.fileno()))
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    finally:
                        sock.close()
                return

    def __enter__(self) -> Watchdog:
        self.watched.last = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
