"""pagila.scheduled starts only the known jobs, and only on a worker that has a schedule (pure)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pagila_tasks.config import from_env
from pagila_tasks.run.context import Context
from pagila_tasks.submission import schedule

NOWHERE = {"PAGILA_REDIS_URL": "redis://127.0.0.1:1/0"}
"""A Redis nobody listens on: a refusal that touched Redis would fail loudly."""


def _job(env: dict[str, str], name: Any) -> tuple[dict[str, Any], list[str]]:
    sent: list[str] = []

    def send(task: str, kwargs: dict[str, Any]) -> str:
        sent.append(task)
        return "never"

    result = schedule.job(Context(from_env({**NOWHERE, **env})), name, send)
    return result, sent


@pytest.mark.parametrize("name", ["run", "load", "replicate"])
def test_no_schedule_no_scheduled_run(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Without PAGILA_SCHEDULE on the worker, even a known job is refused and logged; nothing
    is sent or recorded."""
    with caplog.at_level(logging.ERROR, logger="pagila_tasks.submission.schedule"):
        result, sent = _job({}, name)
    assert result["state"] == "refused" and "PAGILA_SCHEDULE" in result["error"]
    assert sent == []
    assert "scheduled run refused" in caplog.text


@pytest.mark.parametrize("name", ["drop", "RUN", "run ", "", None, ["run"], "load\x1b[2J"])
def test_unknown_jobs_are_refused(name: Any, caplog: pytest.LogCaptureFixture) -> None:
    """With a schedule, a job other than load, replicate or run is refused and logged
    (terminal-safe), and nothing is sent or recorded."""
    with caplog.at_level(logging.ERROR, logger="pagila_tasks.submission.schedule"):
        result, sent = _job({"PAGILA_SCHEDULE": "60"}, name)
    assert result["state"] == "refused" and "unknown job" in result["error"]
    assert sent == []
    assert "scheduled run refused" in caplog.text and "\x1b" not in caplog.text


def test_the_three_jobs_are_accepted_with_a_schedule() -> None:
    """load, replicate and run pass the check when the worker has a schedule."""
    s = from_env({**NOWHERE, "PAGILA_SCHEDULE": "*/5 * * * *"})
    assert [schedule.refusal(s, name) for name in schedule.JOBS] == [None, None, None]
