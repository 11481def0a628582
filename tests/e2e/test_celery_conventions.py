"""It works as a Celery user expects: a bare worker serves every queue, a run nobody can serve is
refused at once, per-run options travel with the run, and Celery beat schedules runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pagila_stack import procfs
from tests import shapes
from tests.support import (
    ROOT,
    assert_replica,
    proc_environ,
    query,
    scalar,
    submit_json,
    wait_for,
)

pytestmark = pytest.mark.e2e


def holders(redis_url: str) -> set[int]:
    """Pids of snapshot holders (spares included) running now for the Redis at ``redis_url``:
    only this test's, tied to it by their environment, whatever else runs on the machine."""
    return {
        pid
        for pid in procfs.table()
        if "pagila_tasks.replication.snapshot" in procfs.cmdline(pid)
        and proc_environ(pid).get("PAGILA_REDIS_URL") == redis_url
    }


def test_a_bare_worker_serves_a_whole_run(servers, isolated) -> None:
    """`celery -A pagila_tasks worker` with no -Q consumes every queue: `pagila-submit run`
    loads and replicates with it alone."""
    iso = isolated({})
    pool = iso.pool(1, prefix="bare", queues=None)
    assert "-Q" not in " ".join(pool.argv or [])
    code, out = iso.submit_json("run")
    assert code == 0, (out, pool.log_tail())
    assert out["state"] == "succeeded"
    assert {u["worker"].split("@")[0] for u in out["units"].values()} == {"bare1"}
    assert_replica(servers.source_dsn, servers.target_dsn)


@pytest.mark.parametrize("queues", [None, "control"])
def test_a_run_nobody_can_serve_is_refused_at_once(servers, isolated, queues) -> None:
    """With no worker, or only a control worker, replicate exits 2 within 5 s naming the queue
    without a consumer and how to start one; no lock, no run record, no snapshot holder."""
    iso = isolated({})
    if queues:
        iso.pool(1, prefix="only", queues=queues)
    before = holders(iso.env["PAGILA_REDIS_URL"])
    started = time.monotonic()
    proc = iso.submit("replicate")
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    missing = "control" if queues is None else "copy"
    line = proc.stderr.strip()
    assert "\n" not in line and f"no worker consumes the {missing} queue" in line, line
    assert f"celery -A pagila_tasks worker -Q {missing}" in line, line
    assert elapsed < 5, elapsed
    assert iso.redis.get("pagila:lock") is None
    assert iso.redis.llen("pagila:runs") == 0
    assert holders(iso.env["PAGILA_REDIS_URL"]) <= before


def test_schemas_travel_with_the_run(servers, isolated) -> None:
    """Workers set to PAGILA_SCHEMAS=public replicate public and "Sales" when the submitter
    passes --schemas public,Sales, and again when the submitter's own PAGILA_SCHEMAS says so."""
    if servers.admin_source is None:
        pytest.skip("needs the stack's admin access to create a source database")
    source = shapes.make_database(
        servers,
        "travel",
        'CREATE SCHEMA "Sales"; CREATE TABLE "Sales".orders (id int PRIMARY KEY, total numeric);'
        'INSERT INTO "Sales".orders SELECT g, g * 1.25 FROM generate_series(1, 40) g;'
        "CREATE TABLE public.things (id int PRIMARY KEY); INSERT INTO public.things VALUES (1);",
    )
    try:
        iso = isolated({"PAGILA_SOURCE_DSN": source, "PAGILA_SCHEMAS": "public"})
        iso.pool(2, prefix="s")
        both = ("public", "Sales")
        proc = iso.submit("replicate", "--schemas", "public,Sales")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert 'schemas public, "Sales"' in proc.stdout.splitlines()[0], proc.stdout
        assert_replica(source, servers.target_dsn, both)
        query(source, 'INSERT INTO "Sales".orders VALUES (41, 1)')
        code, out = submit_json("replicate", env={**iso.env, "PAGILA_SCHEMAS": "public,Sales"})
        assert code == 0, out
        assert out["options"]["schemas"] == ["public", "Sales"]
        assert_replica(source, servers.target_dsn, both)
    finally:
        shapes.drop_database(servers, "travel")


def test_a_schema_with_a_blank_before_a_dot_is_replicated_as_written(servers, isolated) -> None:
    """PAGILA_SCHEMAS='public,Sp1eCial .Char' (workers and submitter) and --schemas with that
    item replicate the schema "Sp1eCial .Char": nothing inside an item is dropped."""
    if servers.admin_source is None:
        pytest.skip("needs the stack's admin access to create a source database")
    source = shapes.make_database(
        servers,
        "blankdot",
        'CREATE SCHEMA "Sp1eCial .Char"; CREATE TABLE "Sp1eCial .Char".t (id int PRIMARY KEY);'
        'INSERT INTO "Sp1eCial .Char".t SELECT generate_series(1, 30);',
    )
    try:
        both = ("public", "Sp1eCial .Char")
        iso = isolated({"PAGILA_SOURCE_DSN": source, "PAGILA_SCHEMAS": "public,Sp1eCial .Char"})
        iso.pool(2, prefix="d")
        code, out = iso.submit_json("replicate")
        assert code == 0 and out["options"]["schemas"] == list(both), out
        assert_replica(source, servers.target_dsn, both)
        query(source, 'INSERT INTO "Sp1eCial .Char".t VALUES (31)')
        code, out = iso.submit_json("replicate", "--schemas", " Sp1eCial .Char ,public")
        assert code == 0 and out["options"]["schemas"] == list(reversed(both)), out
        assert_replica(source, servers.target_dsn, both)
    finally:
        shapes.drop_database(servers, "blankdot")


def test_sql_dir_travels_with_the_run(servers, isolated, pagila_dir: Path, tmp_path: Path) -> None:
    """`load --sql-dir` loads that folder's pair of files on the workers (its sha256 in the
    ledger), not the workers' own PAGILA_SQL_DIR."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(pagila_dir / "pagila-schema.sql", other / "pagila-schema.sql")
    data = (pagila_dir / "pagila-data.sql").read_bytes()
    (other / "pagila-data.sql").write_bytes(
        data.replace(b"PENELOPE\tGUINESS", b"PENELOPE\tOTHER", 1)
    )
    iso = isolated({"PAGILA_SQL_ROOTS": str(tmp_path)})
    iso.pool(1, prefix="q", queues="control")
    proc = iso.submit("load", "--sql-dir", str(other))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digest = hashlib.sha256((other / "pagila-data.sql").read_bytes()).hexdigest()
    assert digest in proc.stdout.splitlines()[0]
    ledger = query(servers.source_dsn, "SELECT data_sha256 FROM pagila_support.pagila_load_audit")
    assert ledger == [(digest,)]
    assert (
        scalar(servers.source_dsn, "SELECT last_name FROM public.actor WHERE actor_id = 1")
        == "OTHER"
    )


@pytest.mark.slow
def test_beat_schedules_runs_and_skips_one_while_the_lock_is_held(
    servers, isolated, tmp_path: Path
) -> None:
    """With PAGILA_SCHEDULE=2 (seconds), `celery -A pagila_tasks beat` starts replications;
    one that finds the lock held (a long run) is recorded as skipped, not failed."""
    iso = isolated({"PAGILA_SCHEDULE": "2", "PAGILA_SCHEDULE_JOB": "replicate"})
    iso.pool(2, prefix="b")
    assert iso.submit("load").returncode == 0
    holder = "load-20990101T000000-holding"
    iso.redis.set("pagila:lock", f'{{"run_id": "{holder}", "kind": "load", "since": "now"}}', ex=5)
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pagila_tasks",
            "beat",
            "-s",
            str(tmp_path / "schedule"),
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env={**os.environ, **iso.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def states() -> list[str]:
            runs = [iso.record(r.decode()) for r in iso.redis.lrange("pagila:runs", 0, -1)]
            return [r.get("state", "") for r in runs if r.get("scheduled")]

        wait_for(lambda: "skipped" in states(), 30, "a scheduled run to be skipped")
        wait_for(lambda: states().count("succeeded") >= 2, 120, "two scheduled runs to succeed")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    runs = [iso.record(r.decode()) for r in iso.redis.lrange("pagila:runs", 0, -1)]
    skipped = [r for r in runs if r.get("state") == "skipped" and r.get("scheduled")]
    # the one skipped while the planted lock held names it; a later one (a slow machine) may
    # have found a scheduled run of its own holding the lock, and says so
    assert any(holder in r["error"] for r in skipped), skipped
    assert all("holds the lock" in r["error"] for r in skipped), skipped
    assert not [r for r in runs if r.get("scheduled") and r.get("state") == "failed"]
    assert_replica(servers.source_dsn, servers.target_dsn)


@pytest.mark.slow
def test_a_snapshot_nobody_copies_from_is_given_up(servers, isolated) -> None:
    """A run whose copies no worker takes (no copy consumer): its snapshot holder gives the
    snapshot up PAGILA_COPY_START_TIMEOUT after prepare, fails the run saying why, frees the
    lock."""
    iso = isolated({"PAGILA_COPY_START_TIMEOUT": "10"})
    iso.pool(1, prefix="c", queues="control")
    assert iso.submit("load").returncode == 0
    run_id = iso.start("replicate")  # pagila-submit would refuse: no worker consumes copy
    wait_for(lambda: iso.record(run_id).get("plan"), 60, "prepare to finish")
    pid = int(iso.redis.hget(f"pagila:run:{run_id}", "snapshot_pid"))
    record = iso.wait_done(run_id, timeout=40)
    assert record["state"] == "failed" and "copy queue" in record["error"], record
    wait_for(lambda: not procfs.state(pid) or procfs.state(pid) == "Z", 15, "the holder to exit")
    assert iso.redis.get("pagila:lock") is None
