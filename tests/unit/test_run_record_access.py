"""Only ``pagila_tasks/run/record.py`` knows how a run record is stored.

Everyone else reads a typed :class:`~pagila_tasks.run.model.Run` and writes through
:class:`~pagila_tasks.run.record.RunRecord`'s methods: no Redis hash command on a run key, and
no run record indexed by a string key (``record["state"]``, ``run.get("plan")``), anywhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pagila_tasks"
OWNER = PACKAGE / "run" / "record.py"

HASH_COMMANDS = frozenset(
    {
        *("hget", "hset", "hsetnx", "hmget", "hmset", "hgetall", "hdel", "hincrby"),
        *("hincrbyfloat", "hexists", "hkeys", "hvals", "hlen", "hscan", "hstrlen"),
    }
)
RECORD_NAMES = frozenset({"record", "rec", "run", "found", "run_record", "progress"})
"""Names the code gives a run record (a dict in the past, a ``Run`` now)."""


def _record_name(node: ast.expr) -> str | None:
    """``record`` for ``record``, ``self.record``, ``ctx.record(...)``; else None."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name) and node.id in RECORD_NAMES:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in RECORD_NAMES:
        return node.attr
    return None


def violations(source: str, where: str) -> list[str]:
    """Each raw hash command and each string-keyed read of a run record in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in HASH_COMMANDS:
                found.append(f"{line}: Redis hash command {node.func.attr}()")
            elif (
                node.func.attr == "get"
                and _record_name(node.func.value)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append(f"{line}: run record read by key {node.args[0].value!r}")
        if (
            isinstance(node, ast.Subscript)
            and _record_name(node.value)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            found.append(f"{line}: run record indexed by key {node.slice.value!r}")
    return found


def test_the_detector_sees_each_kind_of_access() -> None:
    """The check can fail: each way of reaching into a record is reported."""
    sample = (
        "ctx.redis.hget(key, 'snapshot')\n"
        "client.hset(run_key(r), mapping={})\n"
        "record.get('plan')\n"
        "record['state']\n"
        "ctx.record(run_id).get('options')\n"
        "self.run['units']\n"
        "seen.get('schemas')\n"  # not a run record: allowed
        "run.plan.units\n"  # typed: allowed
    )
    assert len(violations(sample, "sample")) == 6, violations(sample, "sample")


def test_only_the_record_module_knows_the_run_record() -> None:
    """No module of the package but run/record.py reads or writes a run record's fields."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != OWNER:
            found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)
