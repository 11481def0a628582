"""The Celery tasks: thin wrappers that unpack arguments, declare retries and call one phase each.

Arguments are JSON-friendly identifiers (run id, schema, table, key range): never a connection,
a row or a secret. The tasks of a run retry at least twice with a backoff (``PAGILA_RETRY_MAX``,
``PAGILA_RETRY_DELAY``); errors that a retry cannot fix (bad input, a lost lock or snapshot) are
not retried, nor are the answers someone waits on (``pagila.preflight``) or that a clock repeats
(``pagila.scheduled``). Task names on the wire (``pagila.*``) never change with the Python names.
A task's hooks end its run through :mod:`pagila_tasks.run.lifecycle`, in one call each.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, chord
from celery.exceptions import Reject
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from pagila_tasks.app import app
from pagila_tasks.base import memory
from pagila_tasks.base.errors import (
    FinalError,
    InputError,
    LockLost,
    PoisonMessage,
    Refused,
    SnapshotLost,
    UsageError,
    is_final,
    one_line,
)
from pagila_tasks.config import settings
from pagila_tasks.load import loader
from pagila_tasks.pg import warm
from pagila_tasks.replication import copy as copying
from pagila_tasks.replication import finish, indexes, snapshot
from pagila_tasks.replication import prepare as prepare_phase
from pagila_tasks.run import guard, lifecycle, shadow
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import LoadOptions, ReplicateOptions
from pagila_tasks.run.plan import Unit
from pagila_tasks.submission import preflight, schedule

_s = settings()
F = TypeVar("F", bound=Callable[..., Any])

PUBLISH_RETRY = {"max_retries": 20, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2}
"""How long a retry's publish waits out the broker (about 35 s; Celery's default, 0.6 s, does not
outlast a Redis restart)."""


def classified(fn: F) -> F:
    """Turn a database error no retry can fix into :class:`FinalError` (see ``is_final``).

    Celery's autoretry only sees exception classes; a psycopg2 error's class does not say
    whether a retry helps, its SQLSTATE does.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if is_final(exc):
                raise FinalError(one_line(exc)) from exc
            raise

    return run  # type: ignore[return-value]


class PagilaTask(Task):
    """Base of every task: the retry policy in one place."""

    abstract = True
    autoretry_for = (Exception,)
    dont_autoretry_for = (
        FinalError,
        InputError,
        UsageError,
        LockLost,
        SnapshotLost,
        PoisonMessage,
    )
    max_retries = _s.retry_max
    retry_backoff = _s.retry_delay
    default_retry_delay = _s.retry_delay
    retry_backoff_max = 3600
    retry_jitter = False
    _ctx: Context | None = None

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's retry, whose message is never lost: its publish waits out a broker restart,
        and a retry that still cannot be published puts the message back to be delivered again
        (Celery drops it, ``Reject(requeue=False)``: with late acks, a chord then never ends)."""
        kwargs.setdefault("retry_policy", PUBLISH_RETRY)
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            raise Reject(exc.reason, requeue=True) from exc

    @property
    def ctx(self) -> Context:
        """Redis client, lock and progress, built once per worker process."""
        if PagilaTask._ctx is None:
            PagilaTask._ctx = Context(settings())
        return PagilaTask._ctx

    @property
    def worker(self) -> str:
        """The node name of the worker running this task (``w1@host``)."""
        return self.request.hostname or socket.gethostname()


def _run_id(args: Any, kwargs: Any) -> str | None:
    return kwargs.get("run_id") or (args[0] if args else None)


class AnswerTask(PagilaTask):
    """A task someone waits on (the submit-time checks) or that a clock repeats (the schedule):
    it answers at once, success or refusal, and is never retried."""

    autoretry_for = ()
    max_retries = 0


def _send(name: str, kwargs: dict[str, Any]) -> str:
    return str(app.send_task(name, kwargs=kwargs, shadow=shadow.for_task(name, kwargs)).id)


class LoadTask(PagilaTask):
    """The load's final failure (after retries, or at once when final) writes the run's one
    failed ledger row, then ends the run and frees the lock; a scheduled ``run`` hands over to
    its replication when the load is done."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if run_id := _run_id(args, kwargs):
            schedule.then(self.ctx, self.ctx.run(run_id), _send)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if (run_id := _run_id(args, kwargs)) and not isinstance(exc, Refused):
            loader.fail(self.ctx, run_id, exc, kwargs.get("sql_dir"))


class PrepareTask(PagilaTask):
    """A replication whose preparation finally fails goes through the errback's path."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if (run_id := _run_id(args, kwargs)) and not isinstance(exc, Refused):
            finish.fail(self.ctx, run_id, f"prepare failed: {exc}")


class CopyTask(PagilaTask):
    """A copy's retries and final failure are written to its unit's progress entry."""

    def _note(self, state: str, exc: BaseException, args: Any, kwargs: Any) -> None:
        run_id = _run_id(args, kwargs)
        unit = kwargs.get("unit") or (args[3] if len(args) > 3 else None)
        if run_id and unit and not isinstance(exc, (PoisonMessage, Refused)):
            name = Unit.from_args(unit).name
            lifecycle.unit_error(self.ctx, run_id, name, state, exc, self.request.retries + 1)

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self._note("retrying", exc, args, kwargs)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self._note("failed", exc, args, kwargs)


class FinishTask(PagilaTask):
    """The callback's error is kept in the run record for the errback to report."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if (run_id := _run_id(args, kwargs)) and not isinstance(exc, Refused):
            lifecycle.note_error(self.ctx, run_id, exc)

    on_failure = on_retry


@app.task(name="pagila.load", bind=True, base=LoadTask)
@classified
def load(
    self: LoadTask,
    run_id: str,
    force: bool = False,
    sql_dir: str | None = None,
    force_reset: bool = False,
) -> dict[str, Any]:
    """Load the Pagila files (the run's ``sql_dir``, else the worker's) into the source."""
    options = LoadOptions(force, sql_dir, force_reset)
    return loader.run(self.ctx, run_id, options, self.worker)


@app.task(name="pagila.preflight", bind=True, base=AnswerTask)
@classified
def preflight_check(self: AnswerTask, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The checks of a run about to be submitted, against the servers the workers use."""
    return preflight.check(self.ctx.s, kind, guard.message_options(kind, options))


@app.task(name="pagila.scheduled", bind=True, base=AnswerTask)
@classified
def scheduled(self: AnswerTask, job: str) -> dict[str, Any]:
    """Celery beat's tick: start the scheduled job, if this worker has a schedule and the job
    is known (see :mod:`pagila_tasks.submission.schedule`)."""
    return schedule.job(self.ctx, job, _send)


@app.task(name="pagila.replicate", bind=True, base=PrepareTask)
@classified
def prepare(
    self: PrepareTask,
    run_id: str,
    tables: list[str] | None = None,
    schemas: list[str] | None = None,
    overwrite: bool = False,
    drop_dependents: bool = False,
    full: bool = False,
    max_rate: int | None = None,
) -> dict[str, Any]:
    """Prepare a run and launch its chord: build_table per table a resume reused whole,
    copy_table per unit, then finish (or fail)."""
    options = ReplicateOptions(tables, schemas, overwrite, drop_dependents, full, max_rate)  # type: ignore[arg-type]
    units, builds = prepare_phase.prepare(self.ctx, run_id, options)
    _launch(self.ctx, run_id, units, builds)
    return {"run_id": run_id, "units": len(units)}


@app.task(name="pagila.copy_table", bind=True, base=CopyTask)
@classified
def copy_table(
    self: CopyTask, run_id: str, schema: str, table: str, unit: dict[str, Any]
) -> dict[str, Any]:
    """Copy one table (or key range) from the snapshot; returns only deterministic values."""
    return copying.copy_unit(self.ctx, run_id, schema, table, unit, self.worker)


@app.task(name="pagila.build_table", bind=True, base=PagilaTask)
@classified
def build_table(self: PagilaTask, run_id: str, table: str) -> dict[str, Any]:
    """Build a reused table's indexes and keys (see :func:`.indexes.reused_table`)."""
    return indexes.reused_table(self.ctx, run_id, table)


@app.task(name="pagila.finish_replication", bind=True, base=FinishTask)
@classified
def finish_replication(self: FinishTask, run_id: str) -> dict[str, Any]:
    """The chord's callback (see :func:`pagila_tasks.replication.finish.finish`)."""
    return finish.finish(self.ctx, run_id)


@app.task(name="pagila.fail_replication", bind=True, base=PagilaTask)
@classified
def fail_replication(self: PagilaTask, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """The errback: records the failure once and frees the lock."""
    return finish.fail(self.ctx, run_id, reason)


def _launch(ctx: Context, run_id: str, units: list[Unit], builds: list[str]) -> None:
    """The run's chord: a resumed run's ``build_table`` per table it reused whole (first: they
    can start at once), one ``copy_table`` per unit, then the callback, the errback on error
    (nothing to copy or build, the live copy proven unchanged: the callback alone)."""
    header = [build_table.si(run_id, t).set(shadow=shadow.for_build(t)) for t in builds] + [
        copy_table.si(run_id, u.schema, u.table, u.as_args()).set(shadow=shadow.for_copy(u))
        for u in units
    ]
    body = finish_replication.si(run_id).set(shadow=f"finish replication {run_id}")
    body.link_error(fail_replication.si(run_id).set(shadow=f"fail replication {run_id}"))
    ctx.record.add_task_ids(run_id, [sig.freeze().id for sig in header] + [body.freeze().id])
    if header:
        chord(header, body).apply_async()
    else:
        body.apply_async()


@task_prerun.connect
def _name_the_worker(task: Any = None, **_: Any) -> None:
    """Steps and units say which worker node ran them (the report's lanes)."""
    if isinstance(task, PagilaTask):
        task.ctx.worker = task.worker


@worker_init.connect
def _return_large_blocks(**_: Any) -> None:
    """Freed spools and row chunks go back to the system (:mod:`.base.memory`); set in the
    worker's main process before its pool forks, so every child has it."""
    memory.return_large_blocks()


@worker_process_init.connect
@task_postrun.connect
def _keep_a_spare_holder(**_: Any) -> None:
    """A spare snapshot holder per worker process (``snapshot.prestart``)."""
    snapshot.prestart()


@worker_process_shutdown.connect
def _close_warm_connections(**_: Any) -> None:
    """Say goodbye to the servers instead of leaving them a dropped socket."""
    warm.close_all()
