"""The local stack: two PostgreSQL clusters, Redis, Celery workers and Flower in one command.

``pagila-stack up`` (see :mod:`pagila_stack.cli`) and the test suite both drive
:class:`~pagila_stack.stack.Stack`; the single-server classes
(:class:`~pagila_stack.postgres.PostgresCluster`,
:class:`~pagila_stack.redis_server.RedisServer`) also work alone for throwaway servers.
Names are exported lazily so ``import pagila_stack`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pagila_tasks.base.errors import PagilaError


class StackError(PagilaError):
    """The stack cannot do what was asked; the message is one line fit for a terminal."""


_EXPORTS = {
    "Stack": "pagila_stack.stack",
    "PostgresCluster": "pagila_stack.postgres",
    "RedisServer": "pagila_stack.redis_server",
    "ServerBinaries": "pagila_stack.binaries",
    "find_servers": "pagila_stack.binaries",
}

__all__ = ["StackError", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
