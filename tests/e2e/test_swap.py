"""The target stays whole: a run is built beside the live copy and switched in with one short
transaction; readers see the previous copy or the new one, a failed run leaves the live copy
exactly as it was, and the next run cleans up after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from pagila_tasks.pg import pgtools
from tests.isolated import Isolated
from tests.support import (
    ROOT,
    assert_replica,
    query,
    run_schemas,
    scalar,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

READS = {
    "rental": "SELECT count(*) FROM public.rental",
    "payment": "SELECT count(*) FROM public.payment",
    "join": "SELECT count(*) FROM public.rental r JOIN public.inventory i USING (inventory_id) "
    "JOIN public.film f USING (film_id)",
    "view": "SELECT sum(total_sales)::text FROM public.sales_by_film_category",
    "matview": "SELECT sum(total_sales)::text FROM public.rental_by_category",
}
NEW_RENTALS = """
INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id)
    SELECT '2022-05-20'::timestamptz + g * interval '1 minute', 1 + g %% 4000, 1 + g %% 500, 1
    FROM generate_series(1, %s) g;
INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
    SELECT r.customer_id, 1, r.rental_id, 3.99, '2022-05-21'
    FROM public.rental r WHERE r.rental_date > '2022-05-20' AND r.rental_date < '2022-06-01'
      AND NOT EXISTS (SELECT FROM public.payment p WHERE p.rental_id = r.rental_id);
REFRESH MATERIALIZED VIEW public.rental_by_category;
"""


def scale(dsn: str, n: int) -> None:
    """The source made Pagila x``n`` with the benchmark's own bench/scale.sql."""
    major = int(scalar(dsn, "SHOW server_version_num")) // 10000
    psql = pgtools.find_tool("psql", major)
    conninfo, env = pgtools.conninfo_and_env(dsn)
    subprocess.run(
        [
            str(psql),
            "-X",
            "-q",
            "-v",
            f"scale={n}",
            "-d",
            conninfo,
            "-f",
            str(ROOT / "bench/scale.sql"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    query(dsn, "REFRESH MATERIALIZED VIEW public.rental_by_category")


class Reader(threading.Thread):
    """Reads one query against the target every 10 ms, keeping every value and every error."""

    def __init__(self, dsn: str, sql: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.sql = dsn, sql
        self.values: list[object] = []
        self.errors: list[str] = []
        self.last_began = 0.0
        """When the last read that ended (with a value or an error) began (monotonic)."""
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    cur.execute(self.sql)
                    self.values.append(cur.fetchone()[0])
                except psycopg2.Error as exc:
                    self.errors.append(str(exc))
                self.last_began = began
                time.sleep(0.01)
        conn.close()

    def finish_after(self, moment: float, timeout: float = 60) -> None:
        """Stop once a read that began after ``moment`` (the run's end) has ended: its value is
        what a reader sees after the run. A slow read in flight at the commit still shows the
        old copy (its snapshot is older), so stopping at a fixed time after the run could end
        on one."""
        wait_for(lambda: self.last_began > moment, timeout, f"a read after the run: {self.sql}")
        self.stop.set()
        self.join(timeout=30)


def read_all(dsn: str) -> dict[str, object]:
    return {name: scalar(dsn, sql) for name, sql in READS.items()}


@pytest.mark.parametrize("how", ["full", "in place"])
def test_readers_see_the_previous_copy_or_the_new_one(servers, isolated, how: str) -> None:
    """Readers querying the target throughout a run (tables, a partitioned table, a join, a view
    and the matview) never get an error, read only the old copy's or the new copy's values, and
    switch from the one to the other exactly once: a whole new copy switched in (``--full``),
    or the source's changes applied to the live copy in place (the default refresh)."""
    iso = isolated({})
    iso.pool(2, prefix="r")
    assert iso.submit("load").returncode == 0
    scale(servers.source_dsn, 20)
    assert iso.submit("replicate").returncode == 0
    old = read_all(servers.target_dsn)
    query(servers.source_dsn, NEW_RENTALS, (3000,))
    readers = {name: Reader(servers.target_dsn, sql) for name, sql in READS.items()}
    for reader in readers.values():
        reader.start()
    wait_for(lambda: all(r.values for r in readers.values()), 60, "every reader to read once")
    started = time.monotonic()
    code, out = iso.submit_json("replicate", *(["--full"] if how == "full" else []))
    ended = time.monotonic()
    seconds = ended - started
    for reader in readers.values():
        reader.finish_after(ended)
    assert code == 0, out
    new = read_all(servers.target_dsn)
    assert_replica(servers.source_dsn, servers.target_dsn)
    if how == "full":
        assert seconds > 2, f"the run took {seconds:.1f} s: too short to show anything"
    expected = "switched" if how == "full" else "changed in place"
    assert out["target_state"] == expected, (out.get("plan"), out.get("error"))
    for name, reader in readers.items():
        assert len(reader.values) > 3, (name, len(reader.values))
        assert reader.errors == [], (name, reader.errors[:3])
        assert old[name] != new[name], name
        assert set(reader.values) <= {old[name], new[name]}, (name, set(reader.values))
        switches = sum(1 for a, b in zip(reader.values, reader.values[1:], strict=False) if a != b)
        assert reader.values[0] == old[name] and reader.values[-1] == new[name], name
        assert switches == 1, (name, switches)
    # a switch holds its transaction for milliseconds; changes in place hold theirs while they
    # write and measure the changed tables, readers reading on (five readers load both cores)
    assert out["switch_ms"] < (1000 if how == "full" else 15000), out["switch_ms"]


def _forced_failure(iso: Isolated, servers, case: str) -> dict:
    """Start a run with the fault ``case`` and wait for it to end; returns its record."""
    if case == "copy fails":
        query(
            servers.source_dsn,
            "ALTER TABLE public.language ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY; "
            "CREATE POLICY boom ON public.language USING (1 / (language_id - language_id) = 1)",
        )
        iso.pool(2, prefix="c")
        out = iso.submit_json("replicate")[1]
        query(
            servers.source_dsn,
            "DROP POLICY boom ON public.language; "
            "ALTER TABLE public.language DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY",
        )
        return out
    if case == "checksum mismatch":
        iso.env["PAGILA_TEST_FAULT"] = "corrupt-stage"
        iso.pool(1, prefix="cp", queues="copy")
        iso.pool(
            1, prefix="ctl", queues="control", argv=[sys.executable, "-m", "tests.fault_worker"]
        )
        return iso.submit_json("replicate", "--full")[1]  # the source is unchanged: copy anyway
    if case == "callback killed":
        iso.env["PAGILA_TEST_FAULT"] = "hang-in-finish"
        iso.pool(1, prefix="cp", queues="copy")
        ctl = iso.pool(
            1, prefix="ctl", queues="control", argv=[sys.executable, "-m", "tests.fault_worker"]
        )
        run_id = iso.submit_json("replicate", "--no-wait", "--full")[1]["run_id"]
        wait_for(lambda: iso.record(run_id).get("phase") == "finish", 120, "the callback to start")
        os.killpg(ctl.pids[0], signal.SIGKILL)
        return iso.wait_done(run_id, timeout=120)
    if case == "target restart":
        cluster = servers.stack.cluster("target")
        iso.pool(2, prefix="t")
        query(
            servers.source_dsn,
            "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS v "
            "FROM generate_series(1, 1500000) g",
        )
        run_id = iso.submit_json("replicate", "--no-wait")[1]["run_id"]
        iso.wait_unit_running(run_id, "public.big")
        cluster.stop()
        try:
            record = iso.wait_done(run_id, timeout=120)
        finally:
            cluster.start()
        query(servers.source_dsn, "DROP TABLE public.big")
        return record
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["copy fails", "checksum mismatch", "callback killed", "target restart"]
)
def test_a_failed_run_leaves_the_live_copy_whole(servers, isolated, case: str) -> None:
    """A copy that fails finally, a checksum mismatch in the staging copy, the callback's worker
    killed, the target restarted mid-copy: the live schemas keep their DDL and every table's
    count and md5; the next run succeeds and leaves no staging schema behind."""
    if case == "target restart" and servers.stack is None:
        pytest.skip("needs the stack's own target server to restart")
    env = {"PAGILA_RETRY_MAX": "2", "PAGILA_RETRY_DELAY": "0.3"}
    if case == "callback killed":
        env |= {"PAGILA_MAX_RUN_SECONDS": "40", "PAGILA_LOCK_TTL": "4"}
    iso = isolated(env)
    iso.pool(2, prefix="w")
    assert iso.submit("load").returncode == 0
    assert iso.submit("replicate").returncode == 0
    for pool in iso.pools:
        pool.stop()
    iso.pools.clear()
    before = state_of(servers.target_dsn)

    out = _forced_failure(iso, servers, case)
    assert out["state"] == "failed", out
    assert state_of(servers.target_dsn) == before
    wait_for(lambda: iso.redis.get("pagila:lock") is None, 60, "the lock to be free")
    if case != "callback killed":  # a killed callback writes no row: its errback never ran
        row = query(
            servers.target_dsn,
            "SELECT succeeded, target_state FROM pagila_support.replication_audit "
            "WHERE run_id = %s",
            (out["run_id"],),
        )
        assert row in ([(False, "unchanged")], []), row  # [] when the target was down
    status = iso.submit("status", out["run_id"])
    assert "target unchanged" in status.stdout or case == "callback killed", status.stdout

    for pool in iso.pools:
        pool.stop()
    iso.pools.clear()
    iso.env.pop("PAGILA_TEST_FAULT", None)
    iso.pool(2, prefix="n")
    code, out = iso.submit_json("replicate")
    assert code == 0, out
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert run_schemas(servers.target_dsn) == []


def test_a_long_reader_does_not_hold_the_switch_up(servers, isolated) -> None:
    """A reader in a long query on the old copy: the switch goes ahead within its bounded wait
    (without the locks it could not get), the reader's query completes on the copy it started
    with, and the previous copy, still in use, is left for the next run to drop."""
    iso = isolated({})
    iso.pool(2, prefix="l")
    assert iso.submit("load").returncode == 0
    assert iso.submit("replicate").returncode == 0
    result: dict[str, object] = {}

    def long_query() -> None:
        conn = psycopg2.connect(servers.target_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*), pg_sleep(8) FROM public.actor")
                result["rows"] = cur.fetchone()[0]
        except psycopg2.Error as exc:
            result["error"] = str(exc)
        finally:
            conn.close()

    reader = threading.Thread(target=long_query)
    reader.start()
    time.sleep(0.5)
    started = time.monotonic()
    code, out = iso.submit_json("replicate", "--full")  # the source is unchanged: copy anyway
    seconds = time.monotonic() - started
    assert code == 0, out
    assert reader.is_alive(), "the run should have ended while the reader still read"
    assert out["switch_ms"] < 1000, out["switch_ms"]
    assert seconds < 7, seconds
    reader.join(timeout=30)
    assert result == {"rows": 200}, result
    left = run_schemas(servers.target_dsn)
    assert len(left) == 1 and left[0].startswith("pagila_old_"), left
    assert iso.submit("replicate").returncode == 0
    assert run_schemas(servers.target_dsn) == []


def test_in_place_and_an_upgrade_from_the_old_layout(servers, isolated) -> None:
    """PAGILA_REPLACE=in-place replicates as before; a target replicated by an earlier version
    (live schemas, a ledger without the switch columns, no staging) is then swapped."""
    iso = isolated({"PAGILA_REPLACE": "in-place"})
    iso.pool(2, prefix="i")
    assert iso.submit("load").returncode == 0
    code, out = iso.submit_json("replicate")
    assert code == 0 and out["target_state"] == "replaced in place", out
    assert_replica(servers.source_dsn, servers.target_dsn)
    query(
        servers.target_dsn,
        "DROP TABLE pagila_support.replication_schemas, pagila_support.replication_steps, "
        "pagila_support.large_object_stage, pagila_support.replication_fingerprint, "
        "pagila_support.staged_runs, pagila_support.staged_units; "
        "ALTER TABLE pagila_support.replication_audit "
        "DROP COLUMN switched_at, DROP COLUMN switch_ms, DROP COLUMN target_state",
    )
    for pool in iso.pools:
        pool.stop()
    iso.pools.clear()
    iso.env["PAGILA_REPLACE"] = "swap"
    iso.pool(2, prefix="s")
    code, out = iso.submit_json("replicate")
    assert code == 0 and out["target_state"] == "switched", out
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert run_schemas(servers.target_dsn) == []
    rows = query(servers.target_dsn, "SELECT count(*) FROM pagila_support.replication_audit")
    assert rows == [(2,)]
    assert json.dumps(out)  # the summary of a switched run is complete


@pytest.mark.parametrize("fault", ["crash-after-post-data", "fail-after-post-data"])
def test_a_callback_run_again_after_post_data(servers, isolated, tmp_path, fault: str) -> None:
    """Pagila's partitioned payment has a primary key: a callback redelivered after post-data
    committed (its worker died) skips it and finishes the run; a callback that fails again and
    again keeps the run's first error, the later one added after it."""
    iso = isolated(
        {
            "PAGILA_TEST_FAULT": fault,
            "PAGILA_TEST_MARKER": str(tmp_path / "post-data-done"),
            "PAGILA_RETRY_MAX": "2",
            "PAGILA_RETRY_DELAY": "0.3",
        }
    )
    iso.pool(1, prefix="cp", queues="copy")
    argv = [sys.executable, "-m", "tests.fault_worker"]
    iso.pool(1, prefix="ctl", queues="control", argv=argv)
    assert iso.submit("load").returncode == 0
    code, out = iso.submit_json("replicate")
    if fault == "crash-after-post-data":
        assert code == 0, out
        assert_replica(servers.source_dsn, servers.target_dsn)
        steps = query(
            servers.target_dsn,
            "SELECT step FROM pagila_support.replication_steps "
            "WHERE step NOT LIKE 'indexes %' ORDER BY step",  # the copies' early builds
        )
        assert steps == [("keep-build",), ("post-data",)]
        return
    assert code == 1 and out["state"] == "failed", out
    assert out["error"].startswith("RuntimeError: the first error") or out["error"].startswith(
        "the first error"
    ), out["error"]
    assert "a later error" in out["error"] and out["later_errors"], out
    row = query(
        servers.target_dsn,
        "SELECT error, target_state FROM pagila_support.replication_audit WHERE run_id = %s",
        (out["run_id"],),
    )
    assert row[0][0].startswith(("RuntimeError: the first error", "the first error")), row
    assert row[0][1] == "unchanged"
    assert run_schemas(servers.target_dsn) == []
