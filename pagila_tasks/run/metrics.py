"""The replication ledger as Prometheus metrics, in a textfile for node_exporter.

Computed from the target's replication ledger (``support.LEDGERS["replication"]``), not from
Redis: the ledger survives a Redis loss and holds the runs of every worker host. Written by
``pagila-submit metrics --textfile PATH`` and, when ``PAGILA_METRICS_FILE`` is set, by the
worker that ends a replication (:func:`after_end`, called by
:func:`pagila_tasks.run.lifecycle.end`). Every series has one label, ``target``
(``host:port/database``, never a user or password), and none names a run: the cardinality is
one series per metric and target.

:func:`registry` is pure (ledger summary and clock in, metrics out); the rest is its I/O.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagila_tasks.config import Settings, where
from pagila_tasks.pg import support
from pagila_tasks.run.context import Context

if TYPE_CHECKING:  # imported where metrics are made: every pagila-submit start would pay for it
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

PREFIX = "pagila_replication_"
APPLICATION = "pagila-metrics"
"""The ``application_name`` of the connection that reads the ledger."""
FILE_MODE = 0o644
"""The textfile's mode: node_exporter runs as another user."""


@dataclass(frozen=True)
class LastRun:
    """The newest ledger row: when it ended (Unix seconds), how long it took, what it moved."""

    finished_at: float
    duration_s: float
    succeeded: bool
    rows: int
    bytes: int


@dataclass(frozen=True)
class Ledger:
    """What the metrics say of one target's replication ledger."""

    runs: int = 0
    failed: int = 0
    last_success_at: float | None = None
    """Unix seconds the last successful run ended (its row's ``finished_at``); None: never."""
    last_run: LastRun | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Ledger:
        """From :func:`pagila_tasks.pg.support.replication_summary`'s row."""
        last = None
        if row.get("last_finished_at") is not None:
            last = LastRun(
                _seconds(row["last_finished_at"]),
                max(0.0, float(row.get("last_duration_s") or 0.0)),
                bool(row.get("last_succeeded")),
                int(row.get("last_rows") or 0),
                int(row.get("last_bytes") or 0),
            )
        success = row.get("last_success_at")
        return cls(
            int(row.get("runs") or 0),
            int(row.get("failed") or 0),
            _seconds(success) if success is not None else None,
            last,
        )


def _seconds(at: datetime | float) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


class _LedgerCollector:
    """Yields the metric families of one ledger summary, as of ``now``."""

    def __init__(self, ledger: Ledger, target: str, now: float) -> None:
        self.ledger, self.target, self.now = ledger, target, now

    def _gauge(self, name: str, doc: str, value: float) -> Metric:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(PREFIX + name, doc, labels=["target"])
        family.add_metric([self.target], value)
        return family

    def _counter(self, name: str, doc: str, value: float) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(PREFIX + name, doc, labels=["target"])
        family.add_metric([self.target], value)
        return family

    def collect(self) -> Iterator[Metric]:
        ledger = self.ledger
        success = ledger.last_success_at or 0.0
        yield self._gauge(
            "last_success_timestamp_seconds",
            "Unix time the last successful replication ended (ledger finished_at); 0: none did. "
            "Alert on time() - this.",
            success,
        )
        yield self._gauge(
            "last_success_age_seconds",
            "Seconds from the last successful replication's end to this file's writing (frozen "
            "between writes: alert on the timestamp instead).",
            max(0.0, self.now - success),
        )
        yield self._counter("runs", "Replications in the target's ledger.", ledger.runs)
        yield self._counter(
            "runs_failed", "Failed replications in the target's ledger.", ledger.failed
        )
        last = ledger.last_run
        if last is None:
            return
        yield self._gauge(
            "last_run_duration_seconds",
            "Seconds from the last run's start to its ledger row.",
            last.duration_s,
        )
        yield self._gauge("last_run_bytes", "Bytes the last run copied.", last.bytes)
        yield self._gauge("last_run_rows", "Rows the last run copied.", last.rows)
        yield self._gauge(
            "last_run_success", "1 if the last run succeeded, else 0.", int(last.succeeded)
        )


def registry(ledger: Ledger, target: str, now: float) -> CollectorRegistry:
    """The metrics of ``ledger`` for ``target`` (``host:port/database``) as of ``now``."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_LedgerCollector(ledger, target, now))
    return reg


def exposition(ledger: Ledger, target: str, now: float) -> bytes:
    """:func:`registry` in Prometheus's text format."""
    from prometheus_client import generate_latest

    return generate_latest(registry(ledger, target, now))


def current(s: Settings) -> bytes:
    """The target's metrics now, read from its ledger; raises :class:`psycopg2.Error` when the
    target cannot be read."""
    ledger = Ledger.from_row(support.replication_summary(s, APPLICATION))
    return exposition(ledger, where(s.target_dsn), time.time())


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (a temporary file in the same folder, renamed
    over it, mode 0644): node_exporter reads the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def after_end(ctx: Context, run_id: str) -> None:
    """A worker's rewrite of ``PAGILA_METRICS_FILE`` once a replication ended (its ledger row
    is committed by then); a failure is a warning, never the run's."""
    path = ctx.s.metrics_file
    if path is None:
        return
    try:
        run = ctx.record.get(run_id)
        if run is None or run.kind != "replicate":
            return
        write(path, current(ctx.s))
    except Exception as exc:
        log.warning("run %s: metrics file %s not written: %s", run_id, path, ctx.s.scrub(str(exc)))
