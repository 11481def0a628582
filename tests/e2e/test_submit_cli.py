"""``pagila-submit`` as an operator uses it: status, history, cancel and Ctrl-C on real runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pagila_tasks.run.model import TERMINAL
from pagila_tasks.run.record import RunRecord
from tests.support import query, redis_client, scalar, submit, submit_json, wait_for

pytestmark = pytest.mark.e2e

UNITS = 21  # 14 tables + 7 payment partitions
BIG_ROWS = 3_000_000
BIG_TABLE = (
    "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS v "
    "FROM generate_series(1, {rows}) g; ALTER TABLE public.big ADD PRIMARY KEY (id); "
    "ANALYZE public.big"
)


def started_run_id(output: str) -> str:
    """The run id from a ``run <id> (<kind>) started`` line."""
    match = re.search(r"^run (replicate-\S+) \(replicate\) started: ", output, re.M)
    assert match, output
    return match.group(1)


def record(run_id: str) -> dict:
    """The run's record in Redis, as JSON."""
    rec = RunRecord(redis_client()).get(run_id)
    assert rec is not None, run_id
    return rec.as_json()


def running_units(run_id: str) -> list[str]:
    """Units of the run a worker is copying right now."""
    run = RunRecord(redis_client()).get(run_id)
    units = run.units if run else {}
    return [name for name, u in units.items() if u.state == "running"]


def test_status_and_history_after_real_runs(workers: list[int], servers) -> None:
    """Plain progress lines without a tty; status and history show the record and both ledgers."""
    proc = submit("run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    both = proc.stdout + proc.stderr
    assert "\x1b[" not in both  # no terminal: no cursor movement, only plain lines
    assert re.search(r"^public\.actor\s+done\s+200 rows", proc.stderr, re.M), proc.stderr
    assert re.search(r"^public\.payment_p2022_01\s+done\s+\d+ rows", proc.stderr, re.M)
    assert re.search(r"^run load-\S+: succeeded$", proc.stdout, re.M), proc.stdout
    run_id = started_run_id(proc.stdout)
    assert re.search(rf"^run {run_id}: succeeded$", proc.stdout, re.M), proc.stdout
    load_id = re.search(r"^run (load-\S+) \(load\) started: ", proc.stdout, re.M).group(1)
    assert submit("load").returncode == 0  # a skipped load: a third run in Redis

    proc = submit("status", run_id)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.match(rf"run {run_id} \(replicate\): succeeded since \S+", lines[0]), lines[0]
    unit_lines = [ln for ln in lines if re.match(r"  public\.\S+\s+done\s+\d+ rows", ln)]
    assert len(unit_lines) == UNITS, proc.stdout
    assert all(re.search(r"\sw[12]@", ln) for ln in unit_lines), unit_lines
    assert re.search(r"^public\.rental\s+16044\s+16044\s+.*ok$", proc.stdout, re.M), proc.stdout

    code, status = submit_json("status", run_id)
    assert code == 0
    assert status["run_id"] == run_id and status["state"] == "succeeded"
    assert len(status["units"]) == UNITS
    assert all(u["state"] == "done" for u in status["units"].values())
    assert all(c["ok"] for c in status["verification"])

    code, hist = submit_json("history", "--limit", "2")
    assert code == 0, hist
    runs = [(r["kind"], r["state"]) for r in hist["runs"]]
    assert runs == [("load", "skipped"), ("replicate", "succeeded")], hist["runs"]
    assert hist["runs"][1]["run_id"] == run_id
    assert [r["run_id"] for r in hist["replication_audit"]] == [run_id]
    rep = hist["replication_audit"][0]
    assert rep["succeeded"] is True and rep["tables"] == UNITS and rep["rows"] > 0
    loads = hist["load_audit"]
    assert [r["run_id"] for r in loads] == [load_id], loads  # a skipped load writes no row
    assert loads[0]["succeeded"] is True and loads[0]["rental_count"] == 16044

    code, hist = submit_json("history", "--limit", "5")
    assert [r["kind"] for r in hist["runs"]] == ["load", "replicate", "load"]

    proc = submit("history", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "recent runs (Redis):" in out and "load ledger" in out and "replication ledger" in out
    assert re.search(rf"^{run_id}\s+replicate\s+succeeded\s", out, re.M), out
    assert re.search(rf"^\d+\s+\S+.*{load_id}\s+True\s", out, re.M), out
    assert re.search(rf"^{run_id}\s+\S+.*True\s+{UNITS}\s+\d+", out, re.M), out
    assert load_id not in out.split("load ledger")[0]  # only the 2 newest runs are listed

    proc = submit("status", "replicate-nope")
    assert proc.returncode == 2 and "no run 'replicate-nope'" in proc.stderr
    for bad in ("0", "-1", "x"):
        proc = submit("history", "--limit", bad)
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)


def test_cancel_stops_a_replication_in_flight(workers: list[int], servers) -> None:
    """cancel on a running replication: state cancelled, failed audit row, lock free, next runs."""
    assert submit_json("load")[0] == 0
    query(servers.source_dsn, BIG_TABLE.format(rows=BIG_ROWS))
    code, out = submit_json("replicate", "--no-wait")
    assert code == 0 and out["state"] == "queued", out
    run_id = out["run_id"]
    wait_for(lambda: any(".big" in n for n in running_units(run_id)), 120, "a big unit to run")
    before = record(run_id)
    assert before["state"] == "running"
    started_at = before["started_at"]

    t0 = time.monotonic()
    code, cancelled = submit_json("cancel", run_id, timeout=120)
    assert code == 0, cancelled
    assert cancelled["state"] == "cancelled" and cancelled["revoked"] >= UNITS
    assert time.monotonic() - t0 < 60

    after = record(run_id)
    assert after["state"] == "cancelled"
    assert "cancelled" in after["error"]
    assert after["started_at"] == started_at  # cancelling does not rewrite the run's history
    assert redis_client().get("pagila:lock") is None
    rows = query(
        servers.target_dsn,
        "SELECT succeeded, error FROM pagila_support.replication_audit WHERE run_id = %s",
        (run_id,),
    )
    assert len(rows) == 1 and rows[0][0] is False and "cancelled" in rows[0][1], rows
    # the big table was not copied whole: the cancel stopped the run in flight
    units = after["units"]
    assert not all(u.get("state") == "done" for u in units.values()), units

    proc = submit("cancel", run_id)
    assert proc.returncode == 0 and "already cancelled" in proc.stdout, proc.stdout

    # The lock is free: a new replication starts at once and repairs the target.
    query(servers.source_dsn, "DROP TABLE public.big")
    code, out = submit_json("replicate", timeout=300)
    assert code == 0 and out["state"] == "succeeded", out
    assert len(out["units"]) == UNITS
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.rental") == 16044
    assert scalar(servers.target_dsn, "SELECT to_regclass('public.big') IS NULL")
    assert (
        scalar(
            servers.target_dsn,
            "SELECT count(*) FROM pagila_support.replication_audit WHERE succeeded",
        )
        == 1
    )
    # Stale copies of the cancelled run never committed after the cancel (their lock was gone).
    wait_for(lambda: not running_units(run_id), 120, "the cancelled run's copies to stop")
    assert record(run_id)["state"] == "cancelled"


def test_ctrl_c_stops_waiting_but_not_the_run(workers: list[int], servers) -> None:
    """SIGINT while waiting prints the run id and how to follow it, exits 130; the run succeeds."""
    assert submit_json("load")[0] == 0
    query(servers.source_dsn, BIG_TABLE.format(rows=1_000_000))
    # capped at 10 MB/s, the run's 47 MB take at least 4.7 s: it still runs when SIGINT comes
    # (uncapped, it could end first, at 27 MB/s, in the second the test waits for a unit)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pagila_tasks.cli.submit", "replicate", "--max-rate", "10MB/s"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        run_id = started_run_id(first)
        wait_for(lambda: running_units(run_id), 120, "a unit to run")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (first, stdout, stderr)
    assert f"run {run_id} goes on" in stdout, stdout
    assert f"pagila-submit status {run_id}" in stdout, stdout
    assert "Traceback" not in stderr, stderr

    final = wait_for(
        lambda: (r := record(run_id))["state"] in TERMINAL and r, 300, "the run to finish"
    )
    assert final["state"] == "succeeded", final.get("error")
    assert redis_client().get("pagila:lock") is None
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.big") == 1_000_000
    code, status = submit_json("status", run_id)
    assert code == 0 and status["state"] == "succeeded"
    assert json.dumps(status)  # the record is complete and serializable after the interrupt
