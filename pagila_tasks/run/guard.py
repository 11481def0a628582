"""Tasks check what they are told to do against what the submitter recorded.

Anyone who can write to the broker can send a task message. A task therefore acts only for a
run that ``pagila-submit`` (or the scheduler) recorded, that holds the run lock, of the task's
kind, with the arguments recorded for it; a copy only for a unit that ``prepare`` planned and
stored for that run, compared whole (columns and key range included). Anything else is refused
with :class:`~pagila_tasks.base.errors.Refused` before the first write: no database, lock or
record is touched, and the task hooks leave the run alone. Every commit that writes what the
run builds (the load, the copy and everything on it, the switch) is preceded by
:func:`before_commit`; only the cleanup of an ended run (its failed ledger row, its staging
dropped, a previous copy dropped) is not, since it must also run for a cancelled one.
"""

from __future__ import annotations

import json
from typing import Any

from pagila_tasks.base.errors import Refused
from pagila_tasks.config import SUPPORT_SCHEMA
from pagila_tasks.run import lifecycle
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan, Run, RunOptions, options_for
from pagila_tasks.run.plan import Unit


def run(ctx: Context, run_id: str, kind: str, options: RunOptions | None = None) -> Run:
    """The run, if this task may act for it; else :class:`Refused`.

    ``options`` are the arguments the message carries beside the run id: they must be what the
    submitter recorded for the run.
    """
    if not isinstance(run_id, str) or not run_id.startswith(f"{kind}-"):
        raise Refused(f"not a {kind} run id: {run_id!r}")
    found = lifecycle.current(ctx, run_id)
    if found is None:
        raise Refused(f"run {run_id} was never submitted (no run record)")
    if found.kind != kind:
        raise Refused(f"run {run_id} is a {found.kind}, not a {kind}")
    if found.cancel_requested:
        raise Refused(f"run {run_id} was cancelled; nothing done")
    if found.state.terminal:
        raise Refused(f"run {run_id} is already {found.state}; nothing done")
    if not ctx.lock.held_by(run_id):
        raise Refused(f"run {run_id} does not hold the run lock; nothing done")
    if options is not None and options != (recorded := _recorded(found)):
        raise Refused(f"run {run_id}: {_difference(options, recorded)}")
    return found


def message_options(kind: str, kwargs: dict[str, Any]) -> RunOptions:
    """A message's options, typed; ones no run of ``kind`` takes are refused."""
    try:
        return options_for(kind, kwargs)
    except (TypeError, ValueError) as exc:
        raise Refused(f"{kind} message: {exc}") from None


def _recorded(found: Run) -> RunOptions | None:
    try:
        return found.typed_options
    except (TypeError, ValueError):
        return None


def _difference(given: RunOptions, recorded: RunOptions | None) -> str:
    submitted = recorded.as_kwargs() if recorded is not None else {}
    for key, value in given.as_kwargs().items():
        if submitted.get(key) != value:
            return f"{key}={value!r} is not what was submitted"
    return "options are not what was submitted"


def unit(found: Run, schema: str, table: str, args: dict[str, Any]) -> tuple[Unit, ReplicationPlan]:
    """The unit of a ``copy_table`` message, if ``prepare`` planned exactly it for this run."""
    plan = found.plan
    u = plan.unit(args) if plan is not None else None
    if plan is None or u is None:
        raise Refused(f"run {found.run_id}: {json.dumps(args)[:200]} is no planned unit")
    if (u.schema, u.table) != (schema, table) or SUPPORT_SCHEMA in (schema, u.schema):
        raise Refused(f"run {found.run_id}: unit {u.name} does not match its message")
    return u, plan


def before_commit(ctx: Context, run_id: str) -> None:
    """Just before every commit that writes a database: the run holds the lock and was not
    cancelled meanwhile (a cancelled run never changes the target)."""
    ctx.lock.assert_held(run_id)
    if ctx.record.cancel_requested(run_id):
        raise Refused(f"run {run_id} was cancelled; its change was rolled back")
