"""The project's own SQL lives in ``sql/<name>.sql``; this reads it once per process."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@cache
def query(name: str) -> str:
    """Return the SQL of ``sql/<name>.sql`` without its whole-line comments.

    The header comments document the parameters; they are dropped so that a placeholder written
    in a comment can never be filled with a value (a value with a newline would escape it).
    """
    path = SQL_DIR / f"{name}.sql"
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith("--")).strip() + "\n"
