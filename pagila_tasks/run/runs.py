"""Starting a run: take the lock, record the run and its options, send its first task.

One way for every starter: ``pagila-submit``, the scheduler (Celery beat) and a scheduled
``run`` whose load hands over to its replication. The task carries the options as its
arguments and acts only if they are what the record holds (see :mod:`pagila_tasks.run.guard`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from pagila_tasks.run.context import Context

TASKS = {"load": "pagila.load", "replicate": "pagila.replicate"}
"""The first task of each kind of run (names on the wire)."""

Send = Callable[[str, dict[str, Any]], str]
"""Sends a task by name with keyword arguments; returns its task id."""


def new_id(kind: str) -> str:
    """``<kind>-<UTC time>-<8 hex>``: sortable, unique, and saying what it is."""
    return f"{kind}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def start(ctx: Context, kind: str, options: dict[str, Any], send: Send, **fields: Any) -> str:
    """Take the lock and start a run; raises :class:`~pagila_tasks.base.errors.LockHeld`."""
    run_id = new_id(kind)
    ctx.lock.acquire(run_id, kind)
    try:
        ctx.progress.create(run_id, kind, ctx.s.max_run_seconds, options=options, **fields)
        ctx.progress.add_task_ids(run_id, [send(TASKS[kind], {"run_id": run_id, **options})])
    except Exception:
        ctx.lock.release(run_id)
        raise
    return run_id


def record_unstarted(ctx: Context, kind: str, state: str, reason: str, **fields: Any) -> str:
    """Record a run that never started (a scheduled run that found the lock held: ``skipped``;
    one whose checks refused it: ``failed``), so the history shows it."""
    run_id = new_id(kind)
    ctx.progress.create(run_id, kind, ctx.s.max_run_seconds, **fields)
    ctx.progress.finish_once(run_id, state, reason)
    return run_id
