"""A running copy's progress, published while it runs: bytes read from the source, bytes
written to the target, rows read so far.

A thread beside the copy publishes them every ``interval`` seconds (the copy itself never
waits on Redis). Bytes are counted as they pass through the spool; rows come from the source
server's own count (``pg_stat_progress_copy``, PostgreSQL 14+), read on a second connection
opened only once a copy outlives its first interval, so small units cost nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg2

from pagila_tasks.config import Settings
from pagila_tasks.pg.db import connect
from pagila_tasks.pg.watchdog import Flow

log = logging.getLogger(__name__)

Publish = Callable[[int, int, int | None], None]
"""Called with (bytes read, bytes written, rows read or None)."""


class Reporter:
    """Publishes a copy's progress from a thread until :meth:`stop`."""

    def __init__(self, s: Settings, name: str, publish: Publish, interval: float = 0.5) -> None:
        self.s = s
        self.name = name
        self.publish = publish
        self.interval = interval
        self.reading: Flow | None = None
        self.writing: Flow | None = None
        self.source_pid: int | None = None
        self.rows: int | None = None
        self._monitor: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"progress {name}", daemon=True)

    def _rows_read(self) -> int | None:
        """Rows the source's COPY has sent so far (None when it cannot be read)."""
        if self.source_pid is None or self.writing is not None:
            return self.rows
        try:
            if self._monitor is None:
                self._monitor = connect(
                    self.s.source_dsn, self.s, f"pagila-progress {self.name}", autocommit=True
                )
            with self._monitor.cursor() as cur:
                cur.execute(
                    "SELECT tuples_processed FROM pg_catalog.pg_stat_progress_copy WHERE pid = %s",
                    (self.source_pid,),
                )
                found = cur.fetchone()
            return int(found[0]) if found else self.rows
        except psycopg2.Error as exc:  # progress is a view of the copy, never its failure
            log.debug("%s: no row count from the source: %s", self.name, exc)
            self.source_pid = None
            return self.rows

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                read = self.reading.moved if self.reading else 0
                written = self.writing.moved if self.writing else 0
                self.rows = self._rows_read()
                try:
                    self.publish(read, written, self.rows)
                except Exception as exc:  # a lost Redis must not fail the copy it describes
                    log.warning("%s: progress not published: %s", self.name, exc)
        finally:  # the thread's own connection, closed by the thread (never from outside,
            # where a query stuck on a paused server would hold the copy up with it)
            if self._monitor is not None:
                with contextlib.suppress(psycopg2.Error):
                    self._monitor.close()

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop publishing; a thread stuck on an unanswering server is left to end alone."""
        self._stop.set()
        self._thread.join(timeout=1)
        if self._thread.is_alive():
            log.warning("%s: progress thread still waiting on the source; left behind", self.name)
