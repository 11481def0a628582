"""The project's own SQL: ``sql/<name>.sql``, installed as the package data ``pagila_tasks.sql``.

Read through :mod:`importlib.resources`, so one code path serves a wheel (the files sit in
``pagila_tasks/sql/``), an editable install (setuptools maps ``pagila_tasks.sql`` to the
top-level ``sql/`` folder) and a source tree that was never installed. Each query is read once
per process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


@cache
def folder() -> Traversable:
    """The folder of the SQL files: the installed package data, else a source tree's ``sql/``."""
    try:
        return resources.files("pagila_tasks.sql")
    except ModuleNotFoundError:
        # A source tree put on sys.path without an install: nothing maps pagila_tasks.sql to
        # the top-level folder, which sits beside the package.
        return Path(__file__).resolve().parents[2] / "sql"


@cache
def query(name: str) -> str:
    """Return the SQL of ``sql/<name>.sql`` without its whole-line comments.

    The header comments document the parameters; they are dropped so that a placeholder written
    in a comment can never be filled with a value (a value with a newline would escape it).
    """
    lines = (folder() / f"{name}.sql").read_text(encoding="utf-8").splitlines()
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith("--")).strip() + "\n"
