"""The orchestrators read as scripts: a STEP line and one call per phase, short enough to see
whole (``prepare``, ``finish``, ``fail`` at most 30 lines each)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pagila_tasks" / "replication"


@pytest.mark.parametrize(
    ("module", "function"), [("prepare", "prepare"), ("finish", "finish"), ("finish", "fail")]
)
def test_an_orchestrator_fits_on_a_screen(module: str, function: str) -> None:
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    length = (node.end_lineno or node.lineno) - node.lineno + 1
    assert length <= 30, f"{module}.{function} is {length} lines"
