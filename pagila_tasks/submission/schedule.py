"""Scheduled runs: Celery beat sends ``pagila.scheduled`` on ``PAGILA_SCHEDULE``.

A scheduled run is started like a submitted one (checks, lock, record, first task) with the
workers' own options. One that finds the lock held is recorded as ``skipped`` (the run holding
it is doing the work), one that its checks refuse as ``failed``; neither touches a database.
A scheduled ``run`` (``PAGILA_SCHEDULE_JOB=run``) is a load whose end starts the replication.

``pagila.scheduled`` is a message like any other: one naming a job other than ``load``,
``replicate`` or ``run``, or reaching a worker with no ``PAGILA_SCHEDULE``, is refused and logged,
and nothing is started or recorded.
"""

from __future__ import annotations

import logging
from typing import Any

from pagila_tasks.base.errors import LockHeld, UsageError
from pagila_tasks.base.names import printable
from pagila_tasks.config import Settings
from pagila_tasks.run import lifecycle
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import LoadOptions, ReplicateOptions, Run, RunOptions, RunState
from pagila_tasks.submission import preflight

log = logging.getLogger(__name__)

OPTIONS: dict[str, RunOptions] = {"load": LoadOptions(), "replicate": ReplicateOptions()}
"""A scheduled run's options: the workers' own settings, nothing forced or overwritten."""
JOBS = ("load", "replicate", "run")
"""The jobs ``pagila.scheduled`` accepts (beat sends ``PAGILA_SCHEDULE_JOB``: run or replicate)."""


def start(ctx: Context, kind: str, send: lifecycle.Send, then: str | None = None) -> dict[str, Any]:
    """Check and start one scheduled run of ``kind``; record it skipped or failed otherwise."""
    options = OPTIONS[kind]
    try:
        seen = preflight.check(ctx.s, kind, options)
        run_id = lifecycle.start(ctx, kind, options, send, seen, scheduled=True, then=then)
    except LockHeld as exc:
        reason = f"scheduled run skipped: {exc}"
        run_id = lifecycle.record_unstarted(ctx, kind, RunState.SKIPPED, reason, scheduled=True)
        log.info("scheduled %s %s skipped: %s", kind, run_id, exc)
        return {"run_id": run_id, "state": "skipped"}
    except UsageError as exc:
        run_id = lifecycle.record_unstarted(ctx, kind, RunState.FAILED, str(exc), scheduled=True)
        log.error("scheduled %s %s refused: %s", kind, run_id, exc)
        return {"run_id": run_id, "state": "failed"}
    log.info("scheduled %s %s started", kind, run_id)
    return {"run_id": run_id, "state": "queued"}


def refusal(s: Settings, name: object) -> str | None:
    """Why a ``pagila.scheduled`` message for job ``name`` is refused, or None to go ahead."""
    if s.schedule is None:
        return "no schedule is configured here (PAGILA_SCHEDULE is unset)"
    if not isinstance(name, str) or name not in JOBS:
        return f"unknown job {printable(repr(name))[:80]} (expected one of {', '.join(JOBS)})"
    return None


def job(ctx: Context, name: str, send: lifecycle.Send) -> dict[str, Any]:
    """``run`` (a load, then its replication), ``load`` or ``replicate``; anything else, or
    any job on a worker without a schedule, is refused and logged, nothing started."""
    if reason := refusal(ctx.s, name):
        log.error("scheduled run refused: %s", reason)
        return {"run_id": None, "state": "refused", "error": reason}
    if name == "run":
        return start(ctx, "load", send, then="replicate")
    return start(ctx, name, send)


def then(ctx: Context, run: Run, send: lifecycle.Send) -> dict[str, Any] | None:
    """After a scheduled load succeeded (or was skipped), start the run it hands over to."""
    if not run.then or run.state not in (RunState.SUCCEEDED, RunState.SKIPPED):
        return None
    return start(ctx, run.then, send)
