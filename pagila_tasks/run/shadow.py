"""Display names for a run's tasks (Celery's ``shadow`` option): what Flower's Tasks page and
the workers' logs show, e.g. ``copy public.rental #2of4`` or ``finish replication RUN``.

The wire names (``pagila.*``) stay as they are for routing, rate limits, result records and
Flower's ``send-task``. Flower (2.2) keeps one name per task, the one the worker reports, and
filters on it only: ``/api/tasks?taskname=`` is exact (any case) on the display name, so
``taskname=pagila.copy_table`` finds nothing and ``taskname=copy public.rental #2of4`` finds one
task; ``search=`` (and the Tasks page's box, or ``/tasks?name=``) matches substrings of the
name, arguments and results (``name:"copy public.rental"`` for every range, a run id for its
tasks). A task sent but not yet received shows its wire name, and Flower's ``/metrics`` counts
``task-sent`` events under it. Copies are named by table and range only, so the other
``/metrics`` series are one per table and range, not one per run; the control tasks name their
run (one series each per run). See README, "Watching and steering a run" (In Flower).
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


def for_build(table: str) -> str:
    """``indexes public.rental``: a resumed run's build of a table it reused whole."""
    return f"indexes {table}"


def for_task(name: str, kwargs: dict[str, Any]) -> str | None:
    """The display name of a run-level task sent with ``kwargs``; None for other tasks."""
    run_id = kwargs.get("run_id")
    return f"{CONTROL[name]} {run_id}" if name in CONTROL and run_id else None
