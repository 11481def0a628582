"""The Celery tasks: thin wrappers that unpack arguments, declare retries and call the phases.

Arguments are JSON-friendly identifiers (run id, schema, table, key range): never a connection,
a row or a secret. Every task retries at least twice with a backoff (``PAGILA_RETRY_MAX``,
``PAGILA_RETRY_DELAY``); errors that a retry cannot fix (bad input, a lost lock or snapshot) are
not retried.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import redis
from celery import Task, chord
from celery.signals import task_postrun, worker_process_init, worker_process_shutdown

from pagila_tasks import loader, pagila_files, snapshot, warm
from pagila_tasks.app import app
from pagila_tasks.config import settings
from pagila_tasks.errors import InputError, LockLost, ReplicationError, SnapshotLost, UsageError
from pagila_tasks.lock import Heartbeat
from pagila_tasks.plan import Unit
from pagila_tasks.progress import run_key
from pagila_tasks.replicate import Context, copy, fail, finish, prepare

log = logging.getLogger(__name__)
_s = settings()


class PoisonMessage(ReplicationError):
    """A unit was delivered more often than any retry policy allows (its worker keeps dying)."""


class PagilaTask(Task):
    """Base of every task: the retry policy in one place."""

    abstract = True
    autoretry_for = (Exception,)
    dont_autoretry_for = (InputError, UsageError, LockLost, SnapshotLost, PoisonMessage)
    max_retries = _s.retry_max
    retry_backoff = _s.retry_delay
    default_retry_delay = _s.retry_delay
    retry_backoff_max = 3600
    retry_jitter = False
    _ctx: Context | None = None

    @property
    def ctx(self) -> Context:
        """Redis client, lock and progress, built once per worker process."""
        if PagilaTask._ctx is None:
            PagilaTask._ctx = Context(settings())
        return PagilaTask._ctx


def _worker_name(task: Task) -> str:
    return task.request.hostname or socket.gethostname()


class LoadTask(PagilaTask):
    """The load's final failure (after retries) is recorded and frees the lock."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        run_id = kwargs.get("run_id") or (args[0] if args else None)
        if run_id:
            ctx = self.ctx
            ctx.progress.finish_once(run_id, "failed", ctx.s.scrub(str(exc)))
            ctx.lock.release(run_id)


@app.task(name="pagila.load", bind=True, base=LoadTask)
def load(self: LoadTask, run_id: str, force: bool = False) -> dict[str, Any]:
    """Load the Pagila files into the source (see :mod:`pagila_tasks.loader`)."""
    ctx = self.ctx
    ctx.progress.set_state(run_id, "running", worker=_worker_name(self))
    try:
        files = pagila_files.locate(ctx.s)
    except InputError as exc:
        loader.record_unreadable(ctx.s, run_id, exc, pagila_files.hashes_present(ctx.s))
        raise
    with Heartbeat(ctx.lock, run_id):
        result = loader.load(
            ctx.s, files, run_id, force, before_commit=lambda: ctx.lock.assert_held(run_id)
        )
    ctx.progress.set_state(run_id, "running", result=result.as_dict())
    ctx.progress.finish_once(run_id, "skipped" if result.status == "skipped" else "succeeded")
    ctx.lock.release(run_id)
    return result.as_dict()


class PrepareTask(PagilaTask):
    """A replication whose preparation finally fails goes through the errback's path."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        run_id = kwargs.get("run_id") or (args[0] if args else None)
        if run_id:
            fail(self.ctx, run_id, f"prepare failed: {self.ctx.s.scrub(str(exc))}")


@app.task(name="pagila.replicate", bind=True, base=PrepareTask)
def replicate(self: PrepareTask, run_id: str, tables: list[str] | None = None) -> dict[str, Any]:
    """Prepare a run and launch its chord: copy_table per unit, then finish (or fail)."""
    ctx = self.ctx
    units = prepare(ctx, run_id, tables)
    header = [copy_table.si(run_id, u.schema, u.table, u.as_args()) for u in units]
    body = finish_replication.si(run_id)
    body.link_error(fail_replication.si(run_id))
    ids = [sig.freeze().id for sig in header] + [body.freeze().id]
    ctx.progress.add_task_ids(run_id, ids)
    chord(header, body).apply_async()
    return {"run_id": run_id, "units": len(units)}


@app.task(name="pagila.copy_table", bind=True, base=PagilaTask)
def copy_table(
    self: PagilaTask, run_id: str, schema: str, table: str, unit: dict[str, Any]
) -> dict[str, Any]:
    """Copy one table (or key range) from the snapshot; returns only deterministic values."""
    ctx = self.ctx
    u = Unit.from_args(unit)
    deliveries = ctx.redis.hincrby(run_key(run_id), f"deliveries:{u.name}", 1)
    cap = ctx.s.retry_max + 3
    if deliveries > cap:
        error = f"{u.name} was delivered {deliveries} times (its worker keeps dying); giving up"
        ctx.progress.unit(run_id, u.name, state="failed", error=error)
        raise PoisonMessage(error)
    try:
        result = copy(ctx, run_id, u, _worker_name(self))
    except Exception as exc:
        final = isinstance(exc, self.dont_autoretry_for) or self.request.retries >= self.max_retries
        ctx.progress.unit(
            run_id,
            u.name,
            state="failed" if final else "retrying",
            error=ctx.s.scrub(f"{type(exc).__name__}: {exc}"),
            attempt=self.request.retries + 1,
        )
        raise
    return {"table": u.name, "rows": result.rows, "bytes": result.bytes}


@app.task(name="pagila.finish_replication", bind=True, base=PagilaTask)
def finish_replication(self: PagilaTask, run_id: str) -> dict[str, Any]:
    """The chord's callback (see :func:`pagila_tasks.replicate.finish`)."""
    try:
        return finish(self.ctx, run_id)
    except Exception as exc:
        self.ctx.progress.note_error(run_id, self.ctx.s.scrub(str(exc)))
        raise


@app.task(name="pagila.fail_replication", bind=True, base=PagilaTask)
def fail_replication(self: PagilaTask, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """The errback: records the failure once and frees the lock."""
    return fail(self.ctx, run_id, reason)


@worker_process_init.connect
@task_postrun.connect
def _keep_a_spare_holder(**_: Any) -> None:
    """A spare snapshot holder per worker process (see :func:`pagila_tasks.snapshot.prestart`)."""
    snapshot.prestart()


@worker_process_shutdown.connect
def _close_warm_connections(**_: Any) -> None:
    """Say goodbye to the servers instead of leaving them a dropped socket."""
    warm.close_all()


def redis_client() -> redis.Redis:
    """A Redis client on the configured URL (for the submit script)."""
    return redis.Redis.from_url(settings().redis_url)
