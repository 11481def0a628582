"""The project's own SQL lives in ``sql/<name>.sql``; this reads it once per process."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@cache
def query(name: str) -> str:
    """Return the text of ``sql/<name>.sql`` (comments included: PostgreSQL ignores them)."""
    path = SQL_DIR / f"{name}.sql"
    return path.read_text(encoding="utf-8")
