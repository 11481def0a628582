"""celeryconfig: JSON only, late acks, events on, and time limits ordered as they must be."""

from __future__ import annotations

import celeryconfig


def test_json_only_and_late_acks() -> None:
    """No pickle anywhere; a task is acked when done and comes back if its worker dies."""
    assert celeryconfig.task_serializer == celeryconfig.result_serializer == "json"
    assert celeryconfig.accept_content == ["json"]
    assert celeryconfig.result_accept_content == ["json"]
    assert celeryconfig.task_acks_late is True
    assert celeryconfig.task_reject_on_worker_lost is True
    assert celeryconfig.worker_prefetch_multiplier == 1


def test_flower_sees_every_task() -> None:
    """Task events and started states are on, and results carry task name and arguments."""
    assert celeryconfig.task_track_started is True
    assert celeryconfig.worker_send_task_events is True
    assert celeryconfig.task_send_sent_event is True
    assert celeryconfig.result_extended is True


def test_time_limits_are_ordered() -> None:
    """Hard time limit < visibility timeout (same in broker and backend) < result expiry."""
    broker_vt = celeryconfig.broker_transport_options["visibility_timeout"]
    backend_vt = celeryconfig.result_backend_transport_options["visibility_timeout"]
    assert broker_vt == backend_vt
    assert celeryconfig.task_soft_time_limit < celeryconfig.task_time_limit < broker_vt
    assert celeryconfig.result_expires > broker_vt


def test_copy_and_control_queues_are_separate() -> None:
    """copy_table and build_table go to the copy queue; everything else to control."""
    assert celeryconfig.task_routes["pagila.copy_table"]["queue"] == "copy"
    assert celeryconfig.task_routes["pagila.build_table"]["queue"] == "copy"
    assert celeryconfig.task_default_queue == "control"


def test_the_app_reads_this_module() -> None:
    """The Celery app's configuration is this module's."""
    from pagila_tasks.app import app

    assert app.conf.task_acks_late is True
    assert app.conf.broker_url == celeryconfig.broker_url
    assert app.conf.broker_transport_options == celeryconfig.broker_transport_options
