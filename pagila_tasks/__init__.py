"""pagila-tasks: load Pagila into a source PostgreSQL and replicate it into a target with Celery.

``celery -A pagila_tasks worker`` finds :data:`app` here.
"""

from pagila_tasks.app import app

__all__ = ["app"]
