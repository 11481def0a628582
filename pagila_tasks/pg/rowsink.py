"""The source COPY's sink: rows gathered by a C-level ``list.append``, moved into the spool in
chunks by a thread.

psycopg2's ``copy_expert`` calls its file's ``write`` once per row. A Python ``write`` (the
watchdog's clock, then ``SpooledTemporaryFile``'s rollover check) cost 1.4-2.2 s of worker CPU
per 1.6 M ``rental`` rows against 0.9 s through this sink (docs/benchmarks.md), CPU the two
cores would otherwise give the servers. Here ``write`` is a list's ``append``; a thread joins
what gathered every ``interval`` seconds and writes it to the spool as one chunk, so the spool's
memory cap and its spill to disk apply as before, give or take what one interval gathers (a few
MB: 35,539 rows at most in a measured 26 MB copy).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import IO, Any


class RowSink:
    """A file-like sink whose ``write`` is ``list.append``; ``moved`` and ``last`` are what a
    :class:`~pagila_tasks.pg.watchdog.Watched` shows (bytes through, when they last moved).

    ``abort`` (the source connection's ``cancel``) is called when the spool cannot take a
    chunk (a full disk): the COPY then stops, and :meth:`__exit__` raises the spool's error.
    """

    def __init__(
        self, spool: IO[bytes], abort: Callable[[], Any] | None = None, interval: float = 0.02
    ) -> None:
        self.spool = spool
        self.abort = abort
        self.interval = interval
        self._rows: list[bytes] = []
        self.write = self._rows.append
        self.last = time.monotonic()
        self.moved = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rowsink", daemon=True)

    def _drain(self) -> None:
        """Move the rows gathered so far (rows appended meanwhile wait for the next drain)."""
        rows = self._rows
        n = len(rows)
        if not n:
            return
        try:
            if self.error is None:  # after an error, rows keep coming until the cancel lands
                chunk = b"".join(rows[:n])
                self.spool.write(chunk)
                self.moved += len(chunk)
        except Exception as exc:  # the spool's (a full disk), or no memory for the chunk
            self.error = exc
            if self.abort is not None:
                with contextlib.suppress(Exception):
                    self.abort()
        finally:
            del rows[:n]  # written or dropped: never kept
            self.last = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()

    def __enter__(self) -> RowSink:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """The last rows drained (after the thread, so the spool has one writer at a time);
        the spool's error raised in place of what the cancelled COPY raised."""
        self._stop.set()
        self._thread.join()
        self._drain()
        if self.error is not None:
            raise self.error


def copy_out(cur: Any, statement: Any, spool: IO[bytes]) -> None:
    """``COPY ... TO STDOUT`` on ``cur`` into ``spool`` through a :class:`RowSink`."""
    with RowSink(spool, cur.connection.cancel) as sink:
        cur.copy_expert(statement, sink, size=1 << 20)
