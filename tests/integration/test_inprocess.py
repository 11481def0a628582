"""An in-process worker (Celery's own test worker) on the real Redis: the retry policy in action."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from celery.contrib.testing.worker import start_worker
from kombu import Connection

from pagila_tasks.app import app
from pagila_tasks.base.errors import Refused
from pagila_tasks.config import settings
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicateOptions
from pagila_tasks.tasks import PagilaTask
from tests.support import redis_client

# The test process reads the session servers from its environment (the settings,
# tests.support.redis_client): asking for them starts them and resets them per test.
pytestmark = pytest.mark.usefixtures("servers")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unreachable_target():
    """The worker's context with a target nobody listens on (a server that is away)."""
    s = dataclasses.replace(
        settings(), target_dsn=f"postgresql://u:p@127.0.0.1:{_closed_port()}/db"
    )
    saved, PagilaTask._ctx = PagilaTask._ctx, Context(s)
    yield PagilaTask._ctx
    PagilaTask._ctx = saved


@pytest.mark.e2e
def test_a_failing_task_is_retried_then_fails(unreachable_target: Context) -> None:
    """A callback whose target refuses connections is retried max_retries times, then fails;
    a callback for a run nobody submitted is refused at once, without a retry."""
    ctx = unreachable_target
    run_id = "replicate-inprocess-1"
    ctx.lock.acquire(run_id, "replicate")
    ctx.record.create(run_id, "replicate", 600, options=ReplicateOptions())
    app.loader.import_default_modules()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["inproc"], shutdown_timeout=30
    ):
        result = app.send_task(
            "pagila.finish_replication", kwargs={"run_id": run_id}, queue="inproc"
        )
        with pytest.raises(Exception, match=r"Connection refused|connection to server"):
            result.get(timeout=60, propagate=True)
        assert result.state == "FAILURE"
        assert result.retries == settings().retry_max

        refused = app.send_task(
            "pagila.finish_replication", kwargs={"run_id": "no-such-run"}, queue="inproc"
        )
        with pytest.raises(Refused):
            refused.get(timeout=60, propagate=True)
        assert refused.retries == 0
    ctx.lock.release(run_id)


_AWAY = Connection(f"redis://127.0.0.1:{_closed_port()}/0", connect_timeout=1)
"""A broker nobody listens on (one that is restarting); kombu connects only when it publishes."""


@app.task(
    name="tests.retry_probe",
    bind=True,
    base=PagilaTask,
    retry_backoff=False,
    default_retry_delay=0,
    retry_kwargs={
        "producer": _AWAY.Producer(),
        "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    },
)
def retry_probe(self: PagilaTask, key: str) -> int:
    """Fails its first delivery, whose retry (autoretry's, as a copy's) cannot be published."""
    delivery = int(self.ctx.redis.incr(key))
    if delivery == 1:
        raise RuntimeError("first delivery")
    return delivery


@pytest.mark.e2e
def test_a_retry_the_broker_does_not_take_is_delivered_again() -> None:
    """A retry whose publish fails (the broker away, as in a Redis restart) leaves the message to
    be delivered again: Celery's own rule drops it, and a chord waiting on it never ends."""
    key = "tests:retry_probe:deliveries"
    redis_client().delete(key)
    app.loader.import_default_modules()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["inproc"], shutdown_timeout=30
    ):
        result = retry_probe.apply_async((key,), queue="inproc")
        assert result.get(timeout=60, propagate=True) == 2
    assert int(redis_client().get(key)) == 2
