"""A run cut short (every worker killed with ``kill -9``) keeps its staging copy; the next run
adopts it, reuses every unit proven equal to the source at its own snapshot, copies the rest
(a unit changed in between on the source, and one changed in the staging copy itself, among
them), and ends equal to the source; readers of the live copy see one switch, from the old copy
to the new one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.test_swap import Reader
from tests.support import assert_replica, children, query, run_schemas, scalar, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

SLOW = [sys.executable, "-m", "tests.fault_worker"]


def _kill_all(pools) -> None:
    """kill -9 of every worker process (main and pool children), as a host lost would."""
    for pool in pools:
        for pid in pool.pids:
            for child in children(pid):
                os.kill(child, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
    pools.clear()


def _committed(servers, run_id: str) -> set[str]:
    rows = query(
        servers.target_dsn,
        "SELECT unit FROM pagila_support.staged_units WHERE run_id = %s",
        (run_id,),
    )
    return {r[0] for r in rows}


@pytest.mark.parametrize("changed_between", [False, True], ids=["same source", "source changed"])
def test_a_run_cut_short_by_kill_9_resumes(servers, isolated, changed_between: bool) -> None:
    iso = isolated({"PAGILA_SPLIT_ROWS": "2000", "PAGILA_TEST_FAULT": "slow-copies"})
    iso.pool(2, prefix="k", argv=SLOW)
    assert iso.submit("load").returncode == 0
    if changed_between:  # a live copy for readers to read while the resumed run switches,
        # and a changed schema, so that the next run builds a whole copy (rows alone would be
        # changed in place, with no staging copy to resume)
        assert iso.submit("replicate").returncode == 0
        query(servers.source_dsn, "ALTER TABLE public.film ALTER COLUMN rental_rate SET DEFAULT 3")
    query(servers.source_dsn, "UPDATE public.film SET rental_rate = rental_rate + 1")

    code, out = iso.submit_json("replicate", "--no-wait")
    assert code == 0, out
    first = out["run_id"]
    record = wait_for(
        lambda: (r := iso.record(first)).get("plan") and r, 60, "the first run to be planned"
    )
    total = len(record["plan"]["units"])
    wait_for(
        lambda: len(_committed(servers, first)) * 2 >= total and _staged_keys(servers),
        120,
        "half the units to be committed, and a foreign key added early",
        interval=0.05,
    )
    _kill_all(iso.pools)
    # cancelled before any worker is back (a new worker would carry on with the run's
    # redelivered copies): the flag first, the errback once a worker starts
    cancel = subprocess.Popen(
        [sys.executable, "-m", "pagila_tasks.cli.submit", "cancel", first, "--json"],
        env={**os.environ, **iso.env},
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: iso.record(first).get("cancel_requested"), 30, "the cancel flag")
    iso.env["PAGILA_TEST_COPY_DELAY"] = "0"
    iso.pool(2, prefix="n", argv=SLOW)
    out, _ = cancel.communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1])["state"] == "cancelled", out
    staged = _committed(servers, first)
    assert total > len(staged) >= total / 2, (total, staged)
    assert len(run_schemas(servers.target_dsn)) == 1  # the staging copy, kept to resume
    assert "kept for the next run to resume" in iso.record(first)["error"]

    changed: set[str] = set()
    if changed_between:  # behind the runs' backs: one staged range on the source, another in
        # the kept staging copy on the target; both must be copied again
        stage = run_schemas(servers.target_dsn)[0]
        ranges = [n for n in sorted(staged) if n.startswith("public.rental#")]
        for name, dsn, schema in zip(
            ranges, (servers.source_dsn, servers.target_dsn), ("public", stage), strict=False
        ):
            part = next(u for u in record["plan"]["units"] if _unit_name(u) == name)
            lo = part["lo"] if part["lo"] is not None else 0
            query(
                dsn,
                f'UPDATE "{schema}".rental SET return_date = NULL WHERE rental_id = '
                f'(SELECT min(rental_id) FROM "{schema}".rental WHERE rental_id >= %s)',
                (lo,),
            )
            changed.add(name)
        assert len(changed) == 2, ranges
        # a whole table a staged key points at, changed on the source: copying it again
        # empties it, which the key would refuse: the resumed run drops that key first
        keys = _staged_keys(servers)
        name, refs = next((n, r) for n, t, r in keys if f"public.{r}" in staged)
        query(
            servers.source_dsn,
            f"UPDATE public.{refs} SET last_update = last_update + interval '1 second' "
            f"WHERE ctid = (SELECT min(ctid) FROM public.{refs})",
        )
        changed.add(f"public.{refs}")

    reader = Reader(servers.target_dsn, "SELECT sum(rental_rate) FROM public.film")
    if changed_between:
        reader.start()
        wait_for(lambda: reader.values, 30, "the reader to read once")
    proc = iso.submit("replicate", "--json")
    if changed_between:  # one switch, from the old copy's value to the new one's, no error
        reader.finish_after(time.monotonic())
        assert reader.errors == [], reader.errors[:3]
        switches = [a != b for a, b in zip(reader.values, reader.values[1:], strict=False)]
        assert sum(switches) == 1, sorted(set(reader.values))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert f"resumes the staging copy of run {first}" in second["plan"]["reason"], second["plan"]
    reused = {n for n, u in second["units"].items() if u["state"] == "reused"}
    odd = reused ^ (staged - changed)  # on a failure: what the record and workers say of them
    assert not odd, (
        odd,
        {n: second["units"].get(n) for n in odd},
        [
            line
            for pool in iso.pools
            for line in pool.log_tail(2000).splitlines()
            if "resum" in line or any(n in line for n in odd)
        ],
    )
    assert all(second["units"][n]["origin"] == first for n in reused)
    assert all(second["units"][n]["state"] == "done" for n in set(second["units"]) - reused)
    hows = {c["table"]: c["how"] for c in second["verification"]}
    assert any(first in h for h in hows.values()), hows
    assert all(c["ok"] for c in second["verification"])
    # each table reused whole is built by a task of its own, from the chord's start
    from pagila_tasks.config import from_env
    from pagila_tasks.replication.indexes import of_reused
    from pagila_tasks.run.context import Context

    plan = Context(from_env(), iso.redis).run(second["run_id"]).plan
    whole = of_reused(plan)
    built = [s["text"] for s in iso.record(second["run_id"])["steps"] if "every unit" in s["text"]]
    assert whole and sorted(t.split(":", 1)[0] for t in built) == whole, (whole, built)
    if changed_between:
        assert hows["public.rental"].startswith("ranges copied"), hows
        steps = iso.record(second["run_id"])["steps"]
        dropped = [s["text"] for s in steps if "dropped the staged foreign" in s["text"]]
        assert dropped and f".{name}" in dropped[0], (name, dropped)
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert run_schemas(servers.target_dsn) == []
    assert scalar(servers.target_dsn, "SELECT count(*) FROM pagila_support.staged_runs") == 0


def _staged_keys(servers) -> list[tuple[str, str, str]]:
    """The foreign keys in the staging copy: (name, table, referenced table)."""
    return [
        (n, t, r)
        for n, t, r in query(
            servers.target_dsn,
            "SELECT k.conname, c.relname, r.relname FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE k.contype = 'f' AND n.nspname LIKE 'pagila\\_stage\\_%%' ORDER BY 1",
        )
    ]


def _unit_name(unit: dict) -> str:
    from pagila_tasks.run.plan import Unit

    return Unit.from_args(unit).name
