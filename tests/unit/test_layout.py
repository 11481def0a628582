"""The package's shape: few top-level entries, imports only downward, and CONTRIBUTING's layout
section naming exactly what the tree holds.

Pure file reading (no servers): the package's AST and CONTRIBUTING.md's text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pagila_tasks"

TOP_FILES = {"__init__.py", "app.py", "tasks.py", "config.py"}
"""The package's own top-level files; anything else at the top counts against the limit."""
MAX_OTHER_ENTRIES = 8

RANKS = {
    "base": 0,
    "config": 1,
    "pg": 2,
    "run": 3,
    "replication": 4,
    "load": 5,
    "submission": 6,
    "cli": 7,
    "tasks": 7,
    "app": 7,
    "": 7,  # pagila_tasks/__init__.py, which hands out the app
}
"""A part may import from its own rank and the ranks below it, never above."""

CHECKED_ROOTS = ("pagila_tasks/", "bench/")
"""Trees whose every folder and module CONTRIBUTING's layout must name."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    return {
        _module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import in ``tree`` (in functions too), except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _imports(name: str, source: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports: ``from pagila_tasks.part import mod`` names the
    module ``mod`` when it is one, else the module it is taken from."""
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            full = f"{base}.{alias.name}"
            targets.add(full if full in modules else base)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: _imports(name, path.read_text(), path.name == "__init__.py", set(modules))
        for name, path in modules.items()
    }


def _part(module: str) -> str:
    """``pagila_tasks.run.lock`` -> ``run``; ``pagila_tasks.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_package_top_level_stays_small() -> None:
    """The package's top holds its own four files and at most eight other entries (parts)."""
    others = sorted(
        p.name for p in PACKAGE.iterdir() if p.name not in TOP_FILES and p.name != "__pycache__"
    )
    assert len(others) <= MAX_OTHER_ENTRIES, (
        f"pagila_tasks/ holds {len(others)} entries besides {sorted(TOP_FILES)} "
        f"(at most {MAX_OTHER_ENTRIES}): {others}; put the new module in a part"
    )


def test_every_part_has_a_rank() -> None:
    """Every folder and top-level module of the package has a place in the import order."""
    graph = _graph()
    unranked = sorted({_part(m) for m in graph} - set(RANKS))
    assert not unranked, f"parts with no rank in tests/unit/test_layout.py RANKS: {unranked}"


def test_imports_go_only_downward() -> None:
    """A part imports only from its own part and the parts below it (base < config < pg < run
    < replication < load < submission < cli, tasks, app)."""
    graph = _graph()
    upward = sorted(
        f"{src} imports {dst} ({_part(src) or 'pagila_tasks'} < {_part(dst) or 'pagila_tasks'})"
        for src, targets in graph.items()
        for dst in targets
        if RANKS.get(_part(dst), 0) > RANKS.get(_part(src), 0)
    )
    assert not upward, "imports from a lower part to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    """No two modules of the package import each other, directly or round a loop."""
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_walk_sees_every_import_form() -> None:
    """The walk finds ``import a.b``, ``from a import b``, ``from a.b import c`` and relative
    imports, in functions too, and skips what ``if TYPE_CHECKING:`` guards."""
    modules = {
        "pagila_tasks",
        "pagila_tasks.app",
        "pagila_tasks.config",
        "pagila_tasks.base.errors",
        "pagila_tasks.base.names",
        "pagila_tasks.pg",
        "pagila_tasks.pg.db",
        "pagila_tasks.run.lock",
    }
    source = (
        "import pagila_tasks.base.errors\n"
        "from pagila_tasks import config\n"
        "from pagila_tasks.base import names\n"
        "from pagila_tasks.run.lock import RunLock\n"
        "def f():\n    from . import db\n"
        "if TYPE_CHECKING:\n    from pagila_tasks.app import app\n"
    )
    assert _imports("pagila_tasks.pg.probe", source, False, modules) == {
        "pagila_tasks.base.errors",
        "pagila_tasks.config",
        "pagila_tasks.base.names",
        "pagila_tasks.run.lock",
        "pagila_tasks.pg.db",
    }
    assert _imports("pagila_tasks.pg", "from .db import connect\n", True, modules) == {
        "pagila_tasks.pg.db"
    }


# CONTRIBUTING.md's layout section: a nested list, two spaces a level, each line
# "- `name` what it is" (a folder ends in "/"). The test reads only the backticked names.
_ENTRY = re.compile(r"^(?P<indent> *)- `(?P<name>[^`]+)`")


def _layout_section() -> list[str]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    match = re.search(r"^## Layout\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "CONTRIBUTING.md has no '## Layout' section"
    return match.group(1).splitlines()


def _layout_paths() -> list[str]:
    """Every path the layout list names, each built from its parents in the list."""
    paths: list[str] = []
    parents: list[tuple[int, str]] = []  # (indent, path) of the open folders
    for line in _layout_section():
        m = _ENTRY.match(line)
        if not m:
            continue
        indent, name = len(m["indent"]), m["name"]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + name
        paths.append(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return paths


def _tree_paths(root: str) -> set[str]:
    """Folders (ending in ``/``) and modules under ``root``; a package's ``__init__.py`` is
    named by its folder."""
    found = set()
    for p in (ROOT / root).rglob("*"):
        rel = p.relative_to(ROOT).as_posix()
        if "__pycache__" in p.parts or p.name.endswith(".egg-info"):
            continue
        if p.is_dir():
            found.add(rel + "/")
        elif p.suffix == ".py" and p.name != "__init__.py":
            found.add(rel)
    return found


def test_contributing_layout_names_the_tree() -> None:
    """CONTRIBUTING's layout names every folder and module of pagila_tasks/ and bench/, and
    nothing that is not there."""
    named = _layout_paths()
    assert set(CHECKED_ROOTS) <= set(named), f"the layout list names no {CHECKED_ROOTS}"
    missing_from_doc = sorted(
        path for root in CHECKED_ROOTS for path in _tree_paths(root) if path not in named
    )
    missing_from_tree = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing_from_doc, (
        "CONTRIBUTING.md's layout does not name (add a line '- `name` what it is' under its "
        "folder): " + ", ".join(missing_from_doc)
    )
    assert not missing_from_tree, (
        "CONTRIBUTING.md's layout names what the tree does not hold: "
        + ", ".join(missing_from_tree)
    )
