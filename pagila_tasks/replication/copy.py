"""Copy one unit (a table or a key range of it) from the source snapshot to the target.

:func:`copy_unit` is the ``copy_table`` task's body (checks, progress, then the copy);
:func:`copy_table` the copy itself.

The Airflow design's contract, kept: ``COPY (SELECT ...) TO STDOUT`` into a memory-capped
``SpooledTemporaryFile`` (spills to disk past the cap), then ``COPY ... FROM STDIN`` into the
target. The target write is one transaction that first empties what it is about to fill
(TRUNCATE for a whole table, which also allows COPY FREEZE; DELETE of the key range for a part)
or, for a heap block range (whose rows the target cannot tell apart), claims the unit in the
bookkeeping schema, so a retried or redelivered copy never duplicates rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from pagila_tasks.base.errors import PoisonMessage, ReplicationError, SnapshotLost
from pagila_tasks.config import Settings
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.rowsink import RowSink
from pagila_tasks.pg.watchdog import Watchdog, Watched
from pagila_tasks.replication import changes, indexes, largeobjects, live
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import guard, lifecycle, ratelimit
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan
from pagila_tasks.run.plan import Unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyResult:
    """What one copy moved; ``rows``/``bytes`` are deterministic for a given snapshot."""

    rows: int
    bytes: int
    spilled: bool
    seconds: float
    read_seconds: float = 0.0
    """Of ``seconds``, the source's COPY into the spool (the progress view's weighting)."""


def _bound(unit: Unit, value: int) -> sql.Composable:
    if unit.by_block:  # the first tuple of block ``value``: a TID range scan, PostgreSQL 14+
        return sql.SQL("{}::pg_catalog.tid").format(sql.Literal(f"({value},0)"))
    return sql.Literal(value)


def range_filter(unit: Unit) -> sql.Composable:
    """`` WHERE`` the unit's key range, or its block range (``ctid``), on the source (nothing
    for a whole table)."""
    if unit.key is None:
        return sql.SQL("")
    key = sql.SQL("ctid") if unit.by_block else sql.Identifier(unit.key)
    conds = []
    if unit.lo is not None:
        conds.append(sql.SQL("{} >= {}").format(key, _bound(unit, unit.lo)))
    if unit.hi is not None:
        conds.append(sql.SQL("{} < {}").format(key, _bound(unit, unit.hi)))
    if not conds:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds)


def _options(fmt: str, freeze: bool = False) -> sql.Composable:
    opts = [sql.SQL("FORMAT {}").format(sql.SQL(fmt))]
    if freeze:
        opts.append(sql.SQL("FREEZE"))
    return sql.SQL("(") + sql.SQL(", ").join(opts) + sql.SQL(")")


@dataclass(frozen=True)
class Statements:
    """A unit's copy as SQL: read it from the source, empty its place on the target, write it."""

    copy_out: sql.Composable
    empty: sql.Composable | None
    """None for a block range: its rows cannot be told apart on the target (a copy of one is
    claimed in its transaction instead, see :func:`copy_table`)."""
    copy_in: sql.Composable


def statements(
    unit: Unit,
    fmt: str,
    target_schema: str | None = None,
    rows: sql.Composable | None = None,
) -> Statements:
    """The statements of ``unit``'s copy: TRUNCATE (and COPY FREEZE) for a whole table, DELETE of
    the key range for a part, so that a retried copy never duplicates rows.

    The rows are written into ``target_schema`` (the run's build of the unit's schema: its
    staging copy, or the live schema itself). A table without a column to copy (none at all, or
    only generated ones) still has rows: COPY then carries empty rows, with no column list.
    A unit whose types binary COPY cannot carry (``unit.text_only``) is copied as text. A
    ``changes`` unit copies the rows ``rows`` keeps into its work table (see :mod:`.changes`).
    """
    if unit.text_only:
        fmt = "text"
    if unit.kind == "large_objects":
        return Statements(
            largeobjects.copy_out(_options(fmt)),
            largeobjects.empty(),
            largeobjects.copy_in(_options(fmt)),
        )
    source = sql.Identifier(unit.schema, unit.table)
    filled = unit.table if unit.stage is None else f"r_{unit.stage}"
    target = sql.Identifier(target_schema or unit.schema, filled)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns)
    listed = sql.SQL(" ({})").format(cols) if unit.columns else sql.SQL("")
    where = rows if rows is not None else range_filter(unit)
    whole = unit.key is None or (unit.lo is None and unit.hi is None)
    return Statements(
        copy_out=sql.SQL("COPY (SELECT {} FROM ONLY {}{}) TO STDOUT WITH {}").format(
            cols, source, where, _options(fmt)
        ),
        empty=(
            sql.SQL("TRUNCATE ONLY {}").format(target)
            if whole
            else None
            if unit.by_block
            else sql.SQL("DELETE FROM ONLY {}{}").format(target, where)
        ),
        copy_in=sql.SQL("COPY {}{} FROM STDIN WITH {}").format(
            target, listed, _options(fmt, freeze=whole)
        ),
    )


def copy_table(
    s: Settings,
    unit: Unit,
    snapshot_id: str,
    before_commit: Callable[[], None],
    target_schema: str | None = None,
    note: Callable[[Any, int], None] | None = None,
    reporter: live.Reporter | None = None,
    bucket: ratelimit.Bucket | None = None,
    claim: Callable[[Any], bool] | None = None,
    rows: sql.Composable | None = None,
) -> CopyResult:
    """Copy ``unit`` inside ``snapshot_id`` into ``target_schema`` (default: the unit's own);
    ``note`` (given the cursor and the rows) and ``before_commit`` run just before the commit,
    in the copy's transaction. ``reporter`` is told where the bytes flow (live progress);
    ``bucket`` caps how fast the source is read (``--max-rate``). ``claim`` (a block range's)
    runs first in the target transaction: False means an earlier delivery committed the unit,
    and nothing is written again. ``rows``: the source rows a ``changes`` unit fetches."""
    started = time.monotonic()
    st = statements(unit, s.copy_format, target_schema, rows)
    with tempfile.SpooledTemporaryFile(max_size=s.spool_max_bytes, prefix="pagila-spool-") as spool:
        with snapshot_cursor(s, snapshot_id, f"pagila-copy-src {unit.name}") as cur:
            with _sink(spool, bucket, cur.connection.cancel) as sink:
                if reporter is not None:
                    reporter.source_pid = cur.connection.get_backend_pid()
                    reporter.reading = sink
                what = f"source COPY of {unit.name}"
                with Watchdog(cur.connection, sink, s.stall_timeout, what):
                    cur.copy_expert(st.copy_out, sink, size=1 << 20)
            source_rows = cur.rowcount
        read_seconds = round(time.monotonic() - started, 3)
        size = spool.tell()
        spilled = bool(getattr(spool, "_rolled", False))
        spool.seek(0)
        with warm.borrow(s.target_dsn, s, f"pagila-copy-tgt {unit.name}") as tgt:
            with tgt.cursor() as cur:
                if claim is not None and not claim(cur):
                    tgt.rollback()
                    log.info("%s: committed by an earlier delivery; not copied again", unit.name)
                    return CopyResult(source_rows, size, spilled, 0.0, 0.0)
                if st.empty is not None:
                    cur.execute(st.empty)
                watched = Watched(spool)
                if reporter is not None:
                    reporter.rows = source_rows
                    reporter.writing = watched
                with Watchdog(tgt, watched, s.stall_timeout, f"target COPY of {unit.name}"):
                    cur.copy_expert(st.copy_in, watched, size=1 << 20)
                target_rows = cur.rowcount
                if target_rows != source_rows:
                    raise RuntimeError(
                        f"{unit.name}: source gave {source_rows} rows, target took {target_rows}"
                    )
                if note is not None:
                    note(cur, target_rows)
            before_commit()
            tgt.commit()
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "copied %s: %d rows, %d bytes, spilled=%s, %.2f s",
        unit.name,
        source_rows,
        size,
        spilled,
        seconds,
    )
    return CopyResult(source_rows, size, spilled, seconds, read_seconds)


def _sink(
    spool: Any, bucket: ratelimit.Bucket | None, cancel: Callable[[], Any]
) -> contextlib.AbstractContextManager[Any]:
    """Where the source's rows go: a :class:`RowSink` (no Python call per row), or, under a
    rate cap (which must hold the read back row by row), the throttled spool."""
    if bucket is not None:
        return contextlib.nullcontext(Watched(ratelimit.Throttled(spool, bucket)))
    return RowSink(spool, cancel)


def copy_unit(
    ctx: Context, run_id: str, schema_name: str, table: str, args: dict[str, Any], worker: str
) -> dict[str, Any]:
    """The ``copy_table`` task: one planned unit inside the run's snapshot, committed only while
    the run holds the lock and was not cancelled.

    Deliveries are counted per unit: a unit whose worker keeps dying (so no retry policy sees
    it fail) is given up after ``PAGILA_RETRY_MAX + 3`` deliveries.
    """
    found = guard.run(ctx, run_id, "replicate")
    unit, plan = guard.unit(found, schema_name, table, args)
    deliveries = ctx.record.delivered(run_id, unit.name)
    if deliveries > ctx.s.retry_max + 3:
        error = f"{unit.name} was delivered {deliveries} times (its worker keeps dying); giving up"
        ctx.record.unit(run_id, unit.name, state="failed", error=error)
        raise PoisonMessage(error)
    table_name = unit.table_name
    if plan.builds_early(table_name) and ctx.record.is_copied(run_id, table_name, unit.name):
        # redelivered after its commit was counted: a key may point at the table by now, so it
        # is not emptied again; only what follows a copy is done (again, idempotently)
        log.info("%s: copied already in run %s, not again", unit.name, run_id)
        _after(ctx, run_id, unit, plan)
        return {"table": unit.name, "rows": None, "bytes": None}
    snapshot_id = ctx.record.snapshot(run_id).id
    if not snapshot_id:
        raise SnapshotLost(
            f"run {run_id} has no snapshot (its holder never started or Redis lost it)"
        )
    target_schema = (
        changes.work_schema(run_id) if unit.kind == "changes" else plan.targets.get(unit.schema)
    )
    if target_schema is None and unit.kind == "table":
        raise ReplicationError(f"run {run_id} has no target schema for {unit.name}")
    ctx.record.copy_started(run_id)
    ctx.record.unit(
        run_id,
        unit.name,
        state="running",
        worker=worker,
        pid=os.getpid(),
        started_at=time.time(),
        read=0,
        written=0,
    )
    staged = plan.swap and unit.kind == "table" and not plan.applies  # resumable
    bucket = ratelimit.Bucket(ctx.redis, run_id, plan.max_rate) if plan.max_rate else None
    try:
        rows = _rows_of(ctx, run_id, unit, plan)
        claimed = unit.by_block or (staged and plan.builds_early(table_name))
        result = _copy_reported(
            ctx, run_id, unit, snapshot_id, target_schema, staged, bucket, rows, claimed
        )
    except Exception as exc:  # on the unit before the chord's errback can read it (Celery
        # sends the errback before the task's on_failure hook writes the final state)
        lifecycle.unit_error(ctx, run_id, unit.name, "error", exc, None)
        raise
    ctx.record.unit(
        run_id,
        unit.name,
        state="done",
        rows=result.rows,
        bytes=result.bytes,
        read=result.bytes,
        written=result.bytes,
        spilled=result.spilled,
        seconds=result.seconds,
        read_seconds=result.read_seconds,
        worker=worker,
        ended_at=time.time(),
    )
    _after(ctx, run_id, unit, plan)
    return {"table": unit.name, "rows": result.rows, "bytes": result.bytes}


def _after(ctx: Context, run_id: str, unit: Unit, plan: ReplicationPlan) -> None:
    """The copy that completes its table builds the table's indexes and keys (see .indexes)."""
    try:
        indexes.after_copy(ctx, run_id, unit, plan)
    except Exception as exc:
        lifecycle.unit_error(ctx, run_id, unit.name, "error", exc, None)
        raise


def _rows_of(ctx: Context, run_id: str, unit: Unit, plan: ReplicationPlan) -> sql.Composable | None:
    """A ``changes`` unit's filter: the keys its table's comparison found to fetch."""
    if unit.kind != "changes":
        return None
    change = next((c for c in plan.changes if c.stage == unit.stage), None)
    if change is None:
        raise ReplicationError(f"run {run_id} planned no changes for {unit.name}")
    return changes.fetch_filter(ctx.s, run_id, change)


def _copy_reported(
    ctx: Context,
    run_id: str,
    unit: Unit,
    snapshot_id: str,
    target_schema: str | None,
    staged: bool,
    bucket: ratelimit.Bucket | None,
    rows: sql.Composable | None = None,
    claimed: bool = False,
) -> CopyResult:
    """:func:`copy_table` with its progress published while it runs, its commit checked, a
    swap's unit recorded as staged (resume) and, when ``claimed``, claimed first (a block
    range's, and a unit of a table a key may point at once copied: a concurrent duplicate of
    the message waits for the first copy, then writes nothing)."""

    def publish(read: int, written: int, rows: int | None) -> None:
        ctx.record.unit(run_id, unit.name, read=read, written=written, rows=rows)

    with live.Reporter(ctx.s, unit.name, publish, ctx.s.progress_interval) as reporter:
        return copy_table(
            ctx.s,
            unit,
            snapshot_id,
            lambda: guard.before_commit(ctx, run_id),
            target_schema,
            (lambda cur, rows: support.note_staged_unit(cur, run_id, unit.name, rows))
            if staged
            else None,
            reporter,
            bucket,
            (lambda cur: support.claim_unit(cur, run_id, unit.name)) if claimed else None,
            rows,
        )
