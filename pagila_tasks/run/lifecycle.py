"""Starting, cancelling and ending a run: the one place each happens.

Every starter (``pagila-submit``, the schedule, a scheduled load handing over to its
replication) calls :func:`start`; every ending (a task's final failure, the errback, a cancel,
the snapshot holder giving up, a run found past its deadline, success) calls :func:`end`, which
sets the terminal state once, marks the units that never ran, frees the lock and scrubs
secrets from the error. What a phase must undo on a database before that (a failed ledger row,
staging dropped) is the phase's own; it then ends the run here in one line.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pagila_tasks.run import metrics
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import Run, RunOptions, RunState

log = logging.getLogger(__name__)

TASKS = {"load": "pagila.load", "replicate": "pagila.replicate"}
"""The first task of each kind of run (names on the wire)."""
FAIL_TASK = "pagila.fail_replication"
"""The errback, sent by ``cancel`` to a replication that is running."""

Send = Callable[[str, dict[str, Any]], str]
"""Sends a task by name with keyword arguments; returns its task id."""
Revoke = Callable[[list[str], bool], None]
"""Revokes task ids (``True``: terminate one that runs)."""

LATE = "run exceeded PAGILA_MAX_RUN_SECONDS without finishing; marked failed"


def new_id(kind: str) -> str:
    """``<kind>-<UTC time>-<8 hex>``: sortable, unique, and saying what it is."""
    return f"{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def start(
    ctx: Context,
    kind: str,
    options: RunOptions,
    send: Send,
    seen: dict[str, Any] | None = None,
    scheduled: bool = False,
    then: str | None = None,
) -> str:
    """Take the lock and start a run; raises :class:`~pagila_tasks.base.errors.LockHeld`.

    The task carries the options as its arguments and acts only if they are what the record
    holds (see :mod:`pagila_tasks.run.guard`).
    """
    run_id = new_id(kind)
    ctx.lock.acquire(run_id, kind)
    try:
        ctx.record.create(run_id, kind, ctx.s.max_run_seconds, options, seen, scheduled, then)
        task_id = send(TASKS[kind], {"run_id": run_id, **options.as_kwargs()})
        ctx.record.add_task_ids(run_id, [task_id])
    except Exception:
        ctx.lock.release(run_id)
        raise
    return run_id


def record_unstarted(
    ctx: Context, kind: str, state: RunState, reason: str, scheduled: bool = False
) -> str:
    """Record a run that never started (a scheduled run that found the lock held: ``skipped``;
    one whose checks refused it: ``failed``), so the history shows it."""
    run_id = new_id(kind)
    ctx.record.create(run_id, kind, ctx.s.max_run_seconds, scheduled=scheduled)
    ctx.record.finish_once(run_id, state, ctx.s.scrub(reason))
    return run_id


def end(ctx: Context, run_id: str, state: RunState, error: str | None = None) -> bool:
    """End the run: the lock freed, then its terminal state (only the first ending counts; True
    for it; a run reported ended holds nothing any more), the units that never ran or were cut
    off marked so, and a replication's metrics textfile rewritten (:mod:`.metrics`). ``error``
    is scrubbed here."""
    ctx.lock.release(run_id)
    ended = ctx.record.finish_once(run_id, state, ctx.s.scrub(error) if error else None)
    if ended and state in (RunState.FAILED, RunState.CANCELLED):
        run = ctx.record.get(run_id)
        for name, u in (run.units if run else {}).items():
            if u.state in ("queued", "running"):
                left = "not run" if u.state == "queued" else "abandoned"
                ctx.record.unit(run_id, name, state=left if state == RunState.FAILED else state)
    if ended:
        metrics.after_end(ctx, run_id)  # PAGILA_METRICS_FILE, for a replication; never raises
    return ended


def note_error(ctx: Context, run_id: str, exc: BaseException | str) -> None:
    """Keep a step's error (scrubbed) in the record for the errback to report."""
    ctx.record.note_error(run_id, ctx.s.scrub(str(exc)))


def unit_error(
    ctx: Context, run_id: str, unit: str, state: str, exc: BaseException, attempt: int | None
) -> None:
    """A copy's error (``error``: as it leaves the copy, before Celery decides between a retry
    and the end), retry or final failure, scrubbed, on its unit's entry."""
    error = ctx.s.scrub(f"{type(exc).__name__}: {exc}")
    more = {"attempt": attempt} if attempt is not None else {}
    ctx.record.unit(run_id, unit, state=state, error=error, **more)


def settle(ctx: Context, run: Run) -> Run:
    """A run past its deadline that never ended is ended now as failed (no run stays
    "running" forever after Redis lost its messages); called explicitly by those who act on
    what they read (tasks, ``pagila-submit``), never by reading itself."""
    if run.state.terminal or time.time() <= run.deadline:
        return run
    end(ctx, run.run_id, RunState.FAILED, LATE)
    return ctx.record.get(run.run_id) or run


def current(ctx: Context, run_id: str) -> Run | None:
    """The run now, settled (see :func:`settle`); None when Redis does not know it."""
    run = ctx.record.get(run_id)
    return settle(ctx, run) if run is not None else None


def cancel(ctx: Context, run_id: str, revoke: Revoke, send: Send) -> int:
    """Cancel a run; returns how many task ids were revoked. The flag first (every task checks
    it before it touches anything); a run not started, or a load, ends here and now (no worker
    needed, its first task is refused later); a running replication is ended by its errback,
    which cleans the target up."""
    run = ctx.record.get(run_id)
    if run is None or run.state.terminal:
        return 0
    ctx.record.request_cancel(run_id)
    ids = ctx.record.task_ids(run_id)
    if ids:
        revoke(ids, run.kind == "load")
    run = ctx.record.get(run_id) or run
    if run.state == RunState.QUEUED or run.kind == "load":
        what = "before it started" if run.state == RunState.QUEUED else "while loading"
        end(ctx, run_id, RunState.CANCELLED, f"cancelled by request {what}")
    elif not run.state.terminal:
        send(FAIL_TASK, {"run_id": run_id, "reason": "cancelled by request"})
    return len(ids)
