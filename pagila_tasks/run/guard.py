"""Tasks check what they are told to do against what the submitter recorded.

Anyone who can write to the broker can send a task message. A task therefore acts only for a
run that ``pagila-submit`` (or the scheduler) recorded, that holds the run lock, of the task's
kind, with the arguments recorded for it; a copy only for a unit that ``prepare`` planned and
stored for that run, compared whole (columns and key range included). Anything else is refused
with :class:`~pagila_tasks.base.errors.Refused` before the first write: no database, lock or record
is touched, and the task hooks leave the run alone.
"""

from __future__ import annotations

import json
from typing import Any

from pagila_tasks.base.errors import Refused
from pagila_tasks.config import SUPPORT_SCHEMA
from pagila_tasks.run.context import Context
from pagila_tasks.run.plan import Unit
from pagila_tasks.run.progress import TERMINAL, run_key


def run(
    ctx: Context, run_id: str, kind: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run's record, if this task may act for it; else :class:`Refused`.

    ``options`` are the arguments the message carries beside the run id: they must be what the
    submitter recorded for the run (its ``options`` field).
    """
    if not isinstance(run_id, str) or not run_id.startswith(f"{kind}-"):
        raise Refused(f"not a {kind} run id: {run_id!r}")
    record = ctx.progress.get(run_id)
    if record is None:
        raise Refused(f"run {run_id} was never submitted (no run record)")
    if record.get("kind") != kind:
        raise Refused(f"run {run_id} is a {record.get('kind')}, not a {kind}")
    if record.get("cancel_requested"):
        raise Refused(f"run {run_id} was cancelled; nothing done")
    if record.get("state") in TERMINAL:
        raise Refused(f"run {run_id} is already {record['state']}; nothing done")
    if not ctx.lock.held_by(run_id):
        raise Refused(f"run {run_id} does not hold the run lock; nothing done")
    if options is not None:
        submitted = record.get("options") or {}
        for key, value in options.items():
            if submitted.get(key) != value:
                raise Refused(f"run {run_id}: {key}={value!r} is not what was submitted")
    return record


def options(record: dict[str, Any]) -> dict[str, Any]:
    """The per-run options the submitter recorded (``tables``, ``schemas``, ``overwrite``...)."""
    return record.get("options") or {}


def unit(record: dict[str, Any], schema: str, table: str, args: dict[str, Any]) -> Unit:
    """The unit of a ``copy_table`` message, if ``prepare`` planned exactly it for this run."""
    planned = record.get("plan") or []
    if not isinstance(args, dict) or args not in planned:
        raise Refused(f"run {record.get('run_id')}: {json.dumps(args)[:200]} is no planned unit")
    u = Unit.from_args(args)
    if (u.schema, u.table) != (schema, table) or SUPPORT_SCHEMA in (schema, u.schema):
        raise Refused(f"run {record.get('run_id')}: unit {u.name} does not match its message")
    return u


def still_ours(ctx: Context, run_id: str) -> None:
    """Just before a commit that changes the target: the run holds the lock and was not
    cancelled meanwhile (a cancelled run never touches the target)."""
    ctx.lock.assert_held(run_id)
    if ctx.redis.hget(run_key(run_id), "cancel_requested"):
        raise Refused(f"run {run_id} was cancelled; its change was rolled back")
