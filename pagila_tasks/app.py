"""The Celery application: built here, configured from ``celeryconfig``, tasks in ``tasks``."""

from __future__ import annotations

from celery import Celery

app = Celery("pagila_tasks", include=["pagila_tasks.tasks"])
app.config_from_object("celeryconfig")
