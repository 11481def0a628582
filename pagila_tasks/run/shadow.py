"""Display names for a run's tasks (Celery's ``shadow`` option): what Flower's Tasks page and
the workers' logs show, e.g. ``copy public.rental #2of4`` or ``finish replication RUN``.

The wire names (``pagila.*``) stay as they are: routing, rate limits and ``taskname`` filters
of Flower's API keep working on them through the task's ``type`` (see README, "Watching a run
in Flower"). Copies are named by table and range only, so Flower's per-task metrics get one
series per table, not one per run; the control tasks name their run.
"""

from __future__ import annotations

from typing import Any

from pagila_tasks.run.plan import Unit

CONTROL = {
    "pagila.load": "load",
    "pagila.replicate": "prepare replication",
    "pagila.finish_replication": "finish replication",
    "pagila.fail_replication": "fail replication",
}
"""The run-level tasks and the words that name them (followed by the run id)."""


def for_copy(unit: Unit) -> str:
    """``copy public.rental #2of4`` (a key range), ``copy public.film`` (a whole table)."""
    part = f" #{unit.part + 1}of{unit.parts}" if unit.part is not None else ""
    return f"copy {unit.table_name}{part}"


def for_task(name: str, kwargs: dict[str, Any]) -> str | None:
    """The display name of a run-level task sent with ``kwargs``; None for other tasks."""
    run_id = kwargs.get("run_id")
    return f"{CONTROL[name]} {run_id}" if name in CONTROL and run_id else None
