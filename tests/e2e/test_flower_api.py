"""Flower after a real run: the API names the run's copies, without secrets, behind basic auth."""

from __future__ import annotations

import json
import re
from collections import Counter
from urllib.parse import quote, unquote, urlsplit

import pytest

from tests.flower_support import (
    SPLIT_ROWS,
    control_names,
    running_flower,
    shown_name,
    submit_run,
)

pytestmark = pytest.mark.e2e

UNITS = 21  # 14 tables + 7 payment partitions, before any key range


def dsn_secrets(*dsns: str) -> list[str]:
    """The passwords inside ``postgresql://user:password@host/db`` URLs."""
    found = []
    for dsn in dsns:
        password = urlsplit(dsn).password
        if password:
            found += [password, unquote(password)]
    return sorted(set(found))


def names_of(tasks: dict[str, dict]) -> Counter[str]:
    """How many tasks of a ``/api/tasks`` answer carry each name."""
    return Counter(t.get("name") for t in tasks.values())


def events_total(metrics: str) -> Counter[tuple[str, str]]:
    """``flower_events_total`` of a /metrics page, per (task label, event type), all workers."""
    out: Counter[tuple[str, str]] = Counter()
    for line in metrics.splitlines():
        if line.startswith("flower_events_total{"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line))
            out[labels["task"], labels["type"]] += float(line.rsplit(" ", 1)[1])
    return out


def test_flower_names_every_copy_of_a_run_without_secrets(servers, isolated) -> None:
    """Flower's API lists each copy of a run by table and key range (``copy public.rental
    #2of5``), each control task by its run; Flower's filters find them by those names (not by
    the wire name); nothing it keeps holds a password; /metrics counts per table."""
    secrets = dsn_secrets(servers.source_dsn, servers.target_dsn, servers.redis_url)
    assert secrets, "the test DSNs carry passwords"
    iso = isolated(SPLIT_ROWS)
    iso.pool(2, prefix="fl")
    with running_flower(("fl1", "fl2"), env=iso.env) as flower:
        load_id, run_id = submit_run(iso)
        code, status = iso.submit_json("status", run_id)
        assert code == 0 and status["state"] == "succeeded", status
        units = status["units"]
        expected = {shown_name(key, u): u for key, u in units.items()}
        rental = {n for n in expected if n.startswith("copy public.rental #")}
        assert len(rental) >= 2 and "copy public.rental" not in expected, sorted(expected)
        assert len(expected) == len(units) > UNITS
        assert all(run_id not in n for n in expected)
        control = control_names(load_id, run_id)

        tasks = flower.wait_succeeded({*expected, *control})
        shown = names_of(tasks)
        # One row per unit, named for it; the control tasks by their run; nothing else but the
        # submit-time checks (sent without a display name); no row says "pagila.copy_table".
        assert {n: c for n, c in shown.items() if n.startswith("copy ")} == dict.fromkeys(
            expected, 1
        ), shown
        assert set(shown) - set(expected) == control | {"pagila.preflight"}, shown
        for t in tasks.values():
            if t["name"] in expected:
                args = str(t["args"])
                schema, table = expected[t["name"]]["table"].split(".", 1)
                assert run_id in args and f"'{schema}', '{table}'" in args, (t["name"], args)
                assert t["worker"].split("@", 1)[0] in ("fl1", "fl2"), t["worker"]

        # Flower filters on the name it shows: the wire name finds nothing, the display name
        # (exact, any case) finds the one task; search= finds by part of a name, or by run id.
        assert flower.get_json("/api/tasks?taskname=pagila.copy_table") == {}
        part = sorted(rental)[1]
        one = flower.get_json(f"/api/tasks?taskname={quote(part.upper())}")
        assert [(t["name"], t["state"]) for t in one.values()] == [(part, "SUCCESS")], one
        found = flower.get_json("/api/tasks?search=" + quote('name:"copy public.rental"'))
        assert set(names_of(found)) == rental, names_of(found)
        found = flower.get_json(f"/api/tasks?search={quote(run_id)}")
        assert set(names_of(found)) == set(expected) | control - {f"load {load_id}"}, found

        # Nothing Flower keeps about any task (arguments, results, errors) holds a password.
        everything = flower.get("/api/tasks")[1]
        assert json.loads(everything)
        for page in (everything, flower.get(f"/api/tasks?taskname={quote(part)}")[1]):
            for secret in secrets:
                assert secret not in page

        status, _ = flower.get("/api/tasks", auth=False)
        assert status == 401
        status, _ = flower.get("/api/workers", auth=False)
        assert status == 401

        # /metrics is open by design (docs/operations.md): counters only, no arguments. Copies
        # are counted per table and range (no run id); the control tasks name their run; the
        # "task-sent" events (sent before any worker reads the display name) keep the wire name.
        status, metrics = flower.get("/metrics", auth=False)
        assert status == 200
        counted = events_total(metrics)
        for name in expected:
            assert counted[name, "task-succeeded"] == 1, (name, metrics[:3000])
        assert counted[f"finish replication {run_id}", "task-succeeded"] == 1, metrics[:3000]
        assert not [n for n, _ in counted if n.startswith("copy ") and run_id in n]
        assert counted["pagila.copy_table", "task-sent"] == len(expected), metrics[:3000]
        assert not [kind for n, kind in counted if n == "pagila.copy_table" and kind != "task-sent"]
        for secret in secrets:
            assert secret not in metrics
