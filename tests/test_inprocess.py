"""An in-process worker (Celery's own test worker) on the real Redis: the retry policy in action."""

from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker

from pagila_tasks.app import app
from pagila_tasks.config import settings


@pytest.mark.e2e
def test_a_failing_task_is_retried_then_fails() -> None:
    """A callback for a run Redis does not know is retried max_retries times, then fails."""
    app.loader.import_default_modules()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["inproc"], shutdown_timeout=30
    ):
        result = app.send_task(
            "pagila.finish_replication", kwargs={"run_id": "no-such-run"}, queue="inproc"
        )
        with pytest.raises(Exception, match="no progress record"):
            result.get(timeout=60, propagate=True)
        assert result.state == "FAILURE"
        assert result.retries == settings().retry_max
