"""Per-role queues: control work on a control-only worker, copies spread over copy-only workers."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis

pytestmark = pytest.mark.e2e

UNITS = 21  # 14 tables + 7 payment partitions


def task_results(client: redis.Redis) -> list[dict]:
    """Every stored task result (extended: name, worker, queue) in one Redis database."""
    out = []
    for key in client.scan_iter("celery-task-meta-*"):
        raw = client.get(key)
        if raw:
            out.append(json.loads(raw))
    return out


def test_copies_run_on_copy_workers_and_control_on_the_control_worker(isolated) -> None:
    """With -Q per role, every copy_table runs on a copy worker (both used), the rest on control."""
    iso = isolated({})
    client = iso.redis
    control = iso.pool(1, prefix="qctl", queues="control", wait=False)
    copiers = iso.pool(2, prefix="qcopy", queues="copy", wait=False)
    control.wait_ready()
    copiers.wait_ready()
    code, out = iso.submit_json("run")
    assert code == 0, (out, control.log_tail(), copiers.log_tail())
    assert out["state"] == "succeeded" and len(out["units"]) == UNITS
    per_unit = Counter(u["worker"].split("@", 1)[0] for u in out["units"].values())
    assert set(per_unit) == {"qcopy1", "qcopy2"}, per_unit

    results = task_results(client)
    by_name: dict[str, set[tuple[str, str]]] = {}
    for r in results:
        assert r["status"] == "SUCCESS", r
        node = r["worker"].split("@", 1)[0]
        by_name.setdefault(r["name"], set()).add((node, r["queue"]))
    copies = [r for r in results if r["name"] == "pagila.copy_table"]
    assert len(copies) == UNITS, Counter(r["name"] for r in results)
    assert by_name.pop("pagila.copy_table") == {("qcopy1", "copy"), ("qcopy2", "copy")}
    assert set(by_name) == {"pagila.load", "pagila.replicate", "pagila.finish_replication"}
    for name, where in by_name.items():
        assert where == {("qctl1", "control")}, (name, where)
