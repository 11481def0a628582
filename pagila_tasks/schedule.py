"""Scheduled runs: Celery beat sends ``pagila.scheduled`` on ``PAGILA_SCHEDULE``.

A scheduled run is started like a submitted one (checks, lock, record, first task) with the
workers' own options. One that finds the lock held is recorded as ``skipped`` (the run holding
it is doing the work), one that its checks refuse as ``failed``; neither touches a database.
A scheduled ``run`` (``PAGILA_SCHEDULE_JOB=run``) is a load whose end starts the replication.
"""

from __future__ import annotations

import logging
from typing import Any

from pagila_tasks import preflight, runs
from pagila_tasks.context import Context
from pagila_tasks.errors import LockHeld, UsageError

log = logging.getLogger(__name__)

OPTIONS: dict[str, dict[str, Any]] = {
    "load": {"force": False, "sql_dir": None},
    "replicate": {
        "tables": None,
        "schemas": None,
        "overwrite": False,
        "drop_dependents": False,
    },
}
"""A scheduled run's options: the workers' own settings, nothing forced or overwritten."""


def start(ctx: Context, kind: str, send: runs.Send, **fields: Any) -> dict[str, Any]:
    """Check and start one scheduled run of ``kind``; record it skipped or failed otherwise."""
    options = OPTIONS[kind]
    try:
        seen = preflight.check(ctx.s, kind, options)
        run_id = runs.start(ctx, kind, options, send, seen=seen, scheduled=True, **fields)
    except LockHeld as exc:
        run_id = runs.record_unstarted(
            ctx, kind, "skipped", f"scheduled run skipped: {exc}", scheduled=True
        )
        log.info("scheduled %s %s skipped: %s", kind, run_id, exc)
        return {"run_id": run_id, "state": "skipped"}
    except UsageError as exc:
        run_id = runs.record_unstarted(ctx, kind, "failed", str(exc), scheduled=True)
        log.error("scheduled %s %s refused: %s", kind, run_id, exc)
        return {"run_id": run_id, "state": "failed"}
    log.info("scheduled %s %s started", kind, run_id)
    return {"run_id": run_id, "state": "queued"}


def job(ctx: Context, name: str, send: runs.Send) -> dict[str, Any]:
    """``run`` (a load, then its replication) or ``replicate``."""
    if name == "run":
        return start(ctx, "load", send, then="replicate")
    return start(ctx, "replicate", send)


def then(ctx: Context, record: dict[str, Any], send: runs.Send) -> dict[str, Any] | None:
    """After a scheduled load succeeded (or was skipped), start the run it hands over to."""
    after = record.get("then")
    if not after or record.get("state") not in ("succeeded", "skipped"):
        return None
    return start(ctx, str(after), send)
