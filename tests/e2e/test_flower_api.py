"""Flower after a real run: the API lists the run's copies, without secrets, behind basic auth."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote, urlsplit

import pytest

from tests.flower_support import running_flower
from tests.support import submit_json, wait_for

pytestmark = pytest.mark.e2e

UNITS = 21  # 14 tables + 7 payment partitions


def dsn_secrets(*dsns: str) -> list[str]:
    """The passwords inside ``postgresql://user:password@host/db`` URLs."""
    found = []
    for dsn in dsns:
        password = urlsplit(dsn).password
        if password:
            found += [password, unquote(password)]
    return sorted(set(found))


def copies_of(tasks: dict[str, dict], run_id: str) -> dict[str, dict]:
    """The copy_table tasks of ``run_id`` in a ``/api/tasks`` answer, keyed by task id."""
    return {
        task_id: t
        for task_id, t in tasks.items()
        if t.get("name") == "pagila.copy_table" and run_id in str(t.get("args"))
    }


def test_flower_lists_every_copy_of_a_run_without_secrets(workers: list[int], servers) -> None:
    """Flower's API shows all 21 copies of a run as SUCCESS with their tables, and no password."""
    secrets = dsn_secrets(servers.source_dsn, servers.target_dsn, servers.redis_url)
    assert secrets, "the test DSNs carry passwords"
    with running_flower(("w1", "w2")) as flower:
        code, out = submit_json("run")
        assert code == 0, out
        run_id = out["run_id"]
        tables = {u["table"].split(".", 1)[1] for u in out["units"].values()}
        assert len(out["units"]) == UNITS

        def all_succeeded() -> dict[str, dict]:
            tasks = flower.get_json("/api/tasks?taskname=pagila.copy_table")
            mine = copies_of(tasks, run_id)
            done = [t for t in mine.values() if t.get("state") == "SUCCESS"]
            return mine if len(done) == UNITS else {}

        copies = wait_for(all_succeeded, 60, "flower to list 21 successful copies", interval=1)
        assert len(copies) == UNITS, copies.keys()
        shown = set()
        for t in copies.values():
            args = str(t["args"])
            names = [name for name in tables if re.search(rf"'{re.escape(name)}'", args)]
            assert names, args
            shown.update(names)
            assert t["worker"].split("@", 1)[0] in ("w1", "w2"), t["worker"]
        assert shown == tables

        # Nothing Flower keeps about any task (arguments, results, errors) holds a password.
        everything = flower.get("/api/tasks")[1]
        assert json.loads(everything)
        for page in (everything, flower.get("/api/tasks?taskname=pagila.copy_table")[1]):
            for secret in secrets:
                assert secret not in page

        status, _ = flower.get("/api/tasks", auth=False)
        assert status == 401
        status, _ = flower.get("/api/workers", auth=False)
        assert status == 401

        # /metrics is open by design (docs/operations.md): counters only, no arguments.
        status, metrics = flower.get("/metrics", auth=False)
        assert status == 200
        succeeded = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("flower_events_total{")
            and 'task="pagila.copy_table"' in line
            and 'type="task-succeeded"' in line
        )
        assert succeeded >= UNITS, metrics[:2000]
        assert run_id not in metrics
        for secret in secrets:
            assert secret not in metrics
