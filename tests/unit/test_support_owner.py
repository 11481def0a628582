"""The bookkeeping schema has one owner (issue #20): :mod:`pagila_tasks.pg.support` runs every
statement on its tables, and the schema's name is one constant, ``config.SUPPORT_SCHEMA``.

Read from the source text alone (no server): the package's Python files are searched for the
schema's name, for SQL text naming a bookkeeping table, and for the names of the ``sql/`` files
that touch those tables.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

from pagila_tasks.config import SUPPORT_SCHEMA
from pagila_tasks.pg import sqlfiles

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pagila_tasks"
OWNER = "pg/support.py"
NAMES_THE_SCHEMA = {"config.py", OWNER}
TABLES = (
    "pagila_load_audit",
    "load_manifest",
    "replication_audit",
    "replication_schemas",
    "replication_steps",
    "replication_live",
    "replication_manifest",
    "kept_objects",
)
"""The bookkeeping tables (the large-object stage is a copy's data: largeobjects.py runs it)."""
TABLE = re.compile(r"\b(?:" + "|".join(TABLES) + r")\b")
SQL = re.compile(
    r"\b(?:SELECT|INSERT|UPDATE|DELETE|FROM|INTO|JOIN|TABLE|TRUNCATE|regclass)\b"
    r"|\.\s*\"?(?:" + "|".join(TABLES) + r")\b",
    re.IGNORECASE,
)
"""A string is SQL on a bookkeeping table when it names one beside a keyword or qualified by
a schema (a bare name, such as a JSON key, is not)."""

LEFT: dict[str, Counter[str]] = {}
"""What a module other than the owner may still hold, at most (none now)."""


def _files() -> dict[str, Path]:
    return {p.relative_to(PACKAGE).as_posix(): p for p in sorted(PACKAGE.rglob("*.py"))}


def _bookkeeping_sql_files() -> set[str]:
    """The ``sql/`` files whose statements (comments left out) name a bookkeeping table."""
    names = {p.stem for p in (ROOT / "sql").glob("*.sql")}
    return {n for n in names if TABLE.search(sqlfiles.query(n))}


def _strings(tree: ast.AST) -> list[str]:
    """Every string constant but docstrings (which may say where things are kept)."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def _offences() -> dict[str, Counter[str]]:
    """Per file: the schema's name written out, SQL strings naming a bookkeeping table, and
    bookkeeping ``sql/`` files named (so run) outside the owner."""
    sql_files = _bookkeeping_sql_files()
    found: dict[str, Counter[str]] = {}
    for rel, path in _files().items():
        text = path.read_text(encoding="utf-8")
        count: Counter[str] = Counter()
        if rel not in NAMES_THE_SCHEMA:
            count["schema"] = text.count(SUPPORT_SCHEMA)
        if rel != OWNER:
            strings = _strings(ast.parse(text, str(path)))
            count["table"] = sum(1 for s in strings if TABLE.search(s) and SQL.search(s))
            count["sql_file"] = sum(1 for s in strings if s in sql_files)
        count = +count  # zeros dropped
        if count:
            found[rel] = count
    return found


def test_the_owner_module_exists_and_runs_the_bookkeeping_sql() -> None:
    text = (PACKAGE / OWNER).read_text(encoding="utf-8")
    assert SUPPORT_SCHEMA not in text, "support.py names the schema through config.SUPPORT_SCHEMA"
    assert not (PACKAGE / "pg" / "audit.py").exists()
    assert _bookkeeping_sql_files() >= {"replication_work_ddl", "load_audit_ddl", "kept_save"}


def test_only_support_touches_the_bookkeeping_tables() -> None:
    """Outside config.py and pg/support.py no module names the schema, writes SQL on its
    tables, or runs a ``sql/`` file that does; the files still being rewritten may only lose
    what they hold (see :data:`LEFT`)."""
    found = _offences()
    over = {
        rel: dict(count - LEFT.get(rel, Counter()))
        for rel, count in found.items()
        if count - LEFT.get(rel, Counter())
    }
    assert over == {}, f"bookkeeping outside {OWNER} (schema name, SQL text, sql/ file): {over}"


def test_the_schema_has_one_name_in_python() -> None:
    """No second constant for the schema: the old ``audit.SCHEMA`` and ``keep.SUPPORT``."""
    for rel, path in _files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                assert node.value.value != SUPPORT_SCHEMA or rel == "config.py", rel
