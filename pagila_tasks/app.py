"""The Celery application: built here, configured from ``celeryconfig``, tasks in ``tasks``."""

from __future__ import annotations

from celery import Celery

from pagila_tasks.cli.flower_guard import guard

guard()  # `celery -A pagila_tasks flower` refuses to start without authentication

app = Celery("pagila_tasks", include=["pagila_tasks.tasks"])
app.config_from_object("celeryconfig")
