"""pagila-tasks: load Pagila into a source PostgreSQL and replicate it into a target with Celery.

``celery -A pagila_tasks worker`` finds :data:`app` here. It is imported on first use (PEP 562),
so helpers that need no Celery (the snapshot holder process) start without importing it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from pagila_tasks.app import app

        return app
    raise AttributeError(f"module 'pagila_tasks' has no attribute {name!r}")
