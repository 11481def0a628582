"""Fault injection: real workers, servers and Redis broken from outside while a copy is in flight.

Every test asserts the end state: target rows and checksums equal to the source (or the documented
failure state), the audit row exactly once, and the run lock free afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time

import psycopg2
import pytest

from tests.isolated import Isolated
from tests.support import assert_replica, children, query, scalar, sequences, submit, wait_for
from tests.workers import WorkerPool

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.slow]

BIG_ROWS = 1_500_000


def make_big(dsn: str, rows: int = BIG_ROWS) -> None:
    """A table large enough that its copy lasts seconds (one unit: see :func:`isolated`)."""
    query(
        dsn,
        f"CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS v, "
        f"now() AS at FROM generate_series(1, {rows}) g",
    )
    query(dsn, "ANALYZE public.big")


@pytest.fixture
def isolated(isolated):  # type: ignore[no-untyped-def]
    """The suite's ``isolated`` with ``PAGILA_SPLIT_ROWS=0``: ``public.big`` (no key) is one
    unit, one long copy for the faults to hit (a swap run would split it into block ranges)."""

    def make(env: dict[str, str] | None = None) -> Isolated:
        return isolated({"PAGILA_SPLIT_ROWS": "0", **(env or {})})

    return make


@pytest.fixture
def loaded(workers: list[int], servers) -> None:
    """Pagila loaded into the source (by the session workers) plus the big table."""
    assert submit("load").returncode == 0
    make_big(servers.source_dsn)


def audit_count(servers, run_id: str) -> int:
    return scalar(
        servers.target_dsn,
        "SELECT count(*) FROM pagila_support.replication_audit WHERE run_id = %s",
        (run_id,),
    )


def assert_clean_success(iso: Isolated, servers, run_id: str) -> None:
    record = iso.wait_done(run_id)
    assert record["state"] == "succeeded", record.get("error")
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert audit_count(servers, run_id) == 1
    assert iso.redis.get("pagila:lock") is None
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.big") == BIG_ROWS


def start_run(iso: Isolated, *args: str) -> str:
    code, out = iso.submit_json("replicate", "--no-wait", *args)
    assert code == 0, out
    return out["run_id"]


def worker_of(unit: dict, pools: list[WorkerPool]) -> int:
    """Main pid of the worker running a unit."""
    node = unit["worker"].split("@")[0]
    for pool in pools:
        if node in pool.names:
            return pool.pids[pool.names.index(node)]
    raise AssertionError(f"no worker {node}")


def test_kill_worker_child_mid_copy(loaded, servers, isolated) -> None:
    """kill -9 of the pool process copying a table: redelivered, re-copied, no duplicates."""
    from tests.support import children

    with isolated({}) as iso:
        iso.pool(2)
        run_id = start_run(iso)
        unit = iso.wait_unit_running(run_id, "public.big")
        main = worker_of(unit, iso.pools)
        time.sleep(0.5)
        for child in children(main):
            os.kill(child, signal.SIGKILL)
        assert_clean_success(iso, servers, run_id)
        assert int(iso.redis.hget(f"pagila:run:{run_id}", "deliveries:public.big")) >= 2


def test_kill_whole_worker_mid_copy(loaded, servers, isolated) -> None:
    """kill -9 of a whole worker: after the visibility timeout the other worker finishes the run."""
    env = {"PAGILA_TASK_TIME_LIMIT": "60", "PAGILA_VISIBILITY_TIMEOUT": "70"}
    with isolated(env) as iso:
        # the broker's visibility timeout is what brings the message back; shorten it for both
        iso.env["PAGILA_VISIBILITY_TIMEOUT"] = env["PAGILA_VISIBILITY_TIMEOUT"]
        iso.pool(2)
        run_id = start_run(iso)
        unit = iso.wait_unit_running(run_id, "public.big")
        victim = worker_of(unit, iso.pools)
        os.killpg(victim, signal.SIGKILL)
        assert_clean_success(iso, servers, run_id)


@pytest.mark.parametrize("side", ["source", "target"])
def test_terminated_backend_is_retried(loaded, servers, side: str, isolated) -> None:
    """pg_terminate_backend of the copy's source or target connection: retried, run completes."""
    app_name = f"pagila-copy-{'src' if side == 'source' else 'tgt'} public.big"
    dsn = servers.source_dsn if side == "source" else servers.target_dsn
    with isolated({"PAGILA_SPOOL_MAX_BYTES": str(1 << 20)}) as iso:
        iso.pool(2)
        run_id = start_run(iso)
        sql = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'active'"
        )
        wait_for(lambda: query(dsn, sql, (app_name,)), 60, f"the {side} COPY to terminate", 0.05)
        record = assert_retry_then_success(iso, servers, run_id)
        error = record["units"]["public.big"].get("error", "").lower()
        # the lost connection, in whichever words libpq found for it mid-COPY (a backend killed
        # during COPY OUT can leave libpq with no message at all: "error with status
        # PGRES_COPY_OUT and no message from the libpq")
        lost = (
            "terminat",
            "closed",
            "invalid socket",
            "lost",
            "interfaceerror",
            "no message from the libpq",
        )
        assert any(w in error for w in lost), error


def assert_retry_then_success(iso: Isolated, servers, run_id: str) -> dict:
    record = iso.wait_done(run_id)
    assert record["state"] == "succeeded", record.get("error")
    big = record["units"]["public.big"]
    assert big.get("attempt", 1) >= 1 and "error" in big, big
    assert_clean_success(iso, servers, run_id)
    return record


def test_paused_source_server_fails_in_bounded_time(loaded, servers, isolated) -> None:
    """kill -STOP of the source server: the copy fails after the stall timeout, then retries."""
    if servers.stack is None:
        pytest.skip("needs the stack's own servers to pause")
    cluster = servers.stack.cluster("source")
    env = {"PAGILA_STALL_TIMEOUT": "3", "PAGILA_CONNECT_TIMEOUT": "3"}
    with isolated(env) as iso:
        iso.pool(2)
        run_id = start_run(iso)
        iso.wait_unit_running(run_id, "public.big")
        time.sleep(0.3)
        postmaster = cluster.pid()
        pids = [postmaster, *_descendants(postmaster)]
        paused_at = time.monotonic()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend may just have ended
                os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: iso.record(run_id)["units"]["public.big"].get("state") == "retrying",
                30,
                "the stalled copy to fail",
            )
            waited = time.monotonic() - paused_at
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert waited < 15, waited
        assert "closed" in iso.record(run_id)["units"]["public.big"]["error"].lower() or waited < 15
        assert_clean_success(iso, servers, run_id)


def _descendants(pid: int) -> list[int]:
    from tests.support import children

    out = []
    for child in children(pid):
        out += [child, *_descendants(child)]
    return out


def test_redis_restart_mid_run(loaded, servers, isolated) -> None:
    """Redis restarted (AOF kept) mid-run: the run completes, or fails and frees the lock."""
    if servers.stack is None:
        pytest.skip("needs the stack's own Redis to restart")
    rs = servers.stack.redis()
    with isolated({}) as iso:
        iso.pool(2)
        run_id = start_run(iso)
        iso.wait_unit_running(run_id, "public.big")
        iso.redis.execute_command("BGREWRITEAOF")
        time.sleep(0.5)
        rs.stop()
        time.sleep(1.0)
        rs.start()
        record = iso.wait_done(run_id, timeout=240)
        assert record["state"] in ("succeeded", "failed")
        if record["state"] == "succeeded":
            assert_replica(servers.source_dsn, servers.target_dsn)
        else:
            assert record.get("error")
        wait_for(lambda: iso.redis.get("pagila:lock") is None, 60, "the lock to be free")
        assert audit_count(servers, run_id) <= 1


def test_redis_state_lost_mid_run(loaded, servers, isolated) -> None:
    """FLUSHALL mid-run: no run stays running past its deadline, a new run starts and completes."""
    env = {"PAGILA_MAX_RUN_SECONDS": "20", "PAGILA_LOCK_TTL": "5"}
    with isolated(env) as iso:
        iso.pool(2)
        run_id = start_run(iso)
        iso.wait_unit_running(run_id, "public.big")
        # keep the run record, lose everything else (messages, chord state, lock)
        record_key = f"pagila:run:{run_id}"
        saved = iso.redis.hgetall(record_key)
        iso.redis.flushdb()
        iso.redis.hset(record_key, mapping=saved)
        wait_for(
            lambda: iso.record(run_id).get("state") == "failed",
            60,
            "the lost run to be marked failed by its deadline",
        )
        assert "PAGILA_MAX_RUN_SECONDS" in iso.record(run_id)["error"]
        proc = iso.submit("replicate")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert_replica(servers.source_dsn, servers.target_dsn)


def test_duplicate_copy_message(loaded, servers, isolated) -> None:
    """The same copy_table message delivered twice: data correct, callback once and not early."""
    with isolated({}) as iso:
        iso.pool(1, prefix="ctl", queues="control")
        run_id = iso.start("replicate")  # no copy worker yet: submit would refuse to start it
        wait_for(lambda: iso.redis.llen("copy") >= 22, 60, "the copy messages to queue")
        raw = next(m for m in iso.redis.lrange("copy", 0, -1) if b"'language'" in m)  # argsrepr
        iso.redis.lpush("copy", raw)
        iso.pool(2, prefix="cp", queues="copy")
        record = iso.wait_done(run_id)
        assert record["state"] == "succeeded", record.get("error")
        assert_replica(servers.source_dsn, servers.target_dsn)
        assert audit_count(servers, run_id) == 1
        finish_started = record["finish_started_at"]
        assert all(
            u["updated_at"] <= finish_started
            for name, u in record["units"].items()
            if name != "public.language"
        ), "callback ran before every copy was done"
        assert int(iso.redis.hget(f"pagila:run:{run_id}", "deliveries:public.language")) == 2


def test_callback_and_errback_twice(loaded, servers, isolated) -> None:
    """Running the callback or errback again changes neither sequences nor the audit row."""
    from pagila_tasks.app import app

    with isolated({}) as iso:
        iso.pool(2)
        code, out = iso.submit_json("replicate")
        assert code == 0, out
        run_id = out["run_id"]
        seqs = sequences(servers.target_dsn)
        audit = query(servers.target_dsn, "SELECT * FROM pagila_support.replication_audit")
        celery = app.__class__(
            broker=iso.env["PAGILA_REDIS_URL"],
            backend=iso.env["PAGILA_REDIS_URL"],
            set_as_current=False,
        )
        celery.config_from_object("celeryconfig")
        celery.conf.broker_url = celery.conf.result_backend = iso.env["PAGILA_REDIS_URL"]
        for name in ("pagila.finish_replication", "pagila.fail_replication"):
            celery.send_task(name, kwargs={"run_id": run_id}).get(timeout=60)
        assert sequences(servers.target_dsn) == seqs
        assert query(servers.target_dsn, "SELECT * FROM pagila_support.replication_audit") == audit
        assert iso.record(run_id)["state"] == "succeeded"
        assert iso.redis.get("pagila:lock") is None


def test_poison_message_is_capped(loaded, servers, isolated) -> None:
    """A worker that dies on every copy of one table: deliveries capped, the run fails clearly."""
    with isolated({}) as iso:
        pool = iso.pool(2, argv=[sys.executable, "-m", "tests.crashing_worker", "public.language"])
        assert pool.pids
        run_id = start_run(iso)
        record = iso.wait_done(run_id, timeout=240)
        assert record["state"] == "failed"
        assert "public.language" in record["error"] and "delivered" in record["error"]
        assert audit_count(servers, run_id) == 1
        assert iso.redis.get("pagila:lock") is None


def test_simultaneous_submits_ten_times(loaded, servers, isolated) -> None:
    """Two replicate submits at the same instant, ten times: one run each time, the other exit 3.

    The winner's run is held (the test reads the target's actor in an open transaction, so its
    prepare waits to drop the keys touching it) until both submits have answered, so the loser
    meets the lock whatever the machine's speed; then it completes.
    """
    with isolated({}) as iso:
        iso.pool(2)
        assert iso.submit("replicate").returncode == 0

        def go(barrier: threading.Barrier, results: list, i: int) -> None:
            barrier.wait()
            results[i] = iso.submit_json("replicate", "--tables", "actor", "--no-wait")

        for _ in range(10):
            blocker = psycopg2.connect(servers.target_dsn)
            blocker.cursor().execute("SELECT 1 FROM public.actor LIMIT 1")  # ACCESS SHARE held
            try:
                barrier = threading.Barrier(2)
                results: list = [None, None]
                threads = [threading.Thread(target=go, args=(barrier, results, i)) for i in (0, 1)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                blocker.rollback()
                blocker.close()
            assert sorted(code for code, _ in results) == [0, 3], results
            winner = next(out for code, out in results if code == 0)
            assert iso.wait_done(winner["run_id"])["state"] == "succeeded"


def test_stale_lock_holder_is_fenced(loaded, servers, isolated) -> None:
    """A run whose lock expired cannot free or take the next run's lock; its writes are refused."""
    env = {"PAGILA_LOCK_TTL": "2", "PAGILA_LOCK_START_GRACE": "60"}
    with isolated(env) as iso:
        iso.pool(2)
        run_a = start_run(iso)
        unit = iso.wait_unit_running(run_a, "public.big")
        holder = int(iso.redis.hget(f"pagila:run:{run_a}", "snapshot_pid"))
        copier = children(worker_of(unit, iso.pools))
        paused = [holder, *copier]  # run A stops extending its lock, and its copy stalls
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: iso.redis.get("pagila:lock") is None, 20, "run A's lock to expire")
            code, out = iso.submit_json("replicate", "--no-wait")
            assert code == 0, out
            run_b = out["run_id"]
            assert json.loads(iso.redis.get("pagila:lock"))["run_id"] == run_b
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        record_a = iso.wait_done(run_a)
        assert record_a["state"] == "failed"
        record_b = iso.wait_done(run_b)
        assert record_b["state"] == "succeeded", record_b.get("error")
        assert_replica(servers.source_dsn, servers.target_dsn)
        assert audit_count(servers, run_b) == 1
        assert iso.redis.get("pagila:lock") is None


def test_source_writes_during_run(loaded, servers, isolated) -> None:
    """Inserts into rental and payment during a run: the target equals the snapshot, FKs hold."""
    stop = threading.Event()
    inserted = [0]

    def writer() -> None:
        conn = psycopg2.connect(servers.source_dsn)
        conn.autocommit = True
        cur = conn.cursor()
        while not stop.is_set():
            cur.execute(
                "WITH r AS (INSERT INTO public.rental "
                "(rental_date, inventory_id, customer_id, staff_id) "
                "VALUES ('2022-05-01'::timestamptz + %s * interval '1 second', 1, 1, 1) "
                "RETURNING rental_id) "
                "INSERT INTO public.payment "
                "(customer_id, staff_id, rental_id, amount, payment_date) "
                "SELECT 1, 1, rental_id, 1.99, '2022-05-02' FROM r",
                (inserted[0],),
            )
            inserted[0] += 1
        conn.close()

    before = scalar(servers.source_dsn, "SELECT count(*) FROM public.rental")
    with isolated({}) as iso:
        iso.pool(2)
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        wait_for(lambda: inserted[0] >= 5, 30, "the writer to be inserting")
        try:
            code, out = iso.submit_json("replicate")
        finally:
            stop.set()
            thread.join(timeout=10)
        assert code == 0, out
        assert thread.is_alive() is False and inserted[0] > 5
        copied = scalar(servers.target_dsn, "SELECT count(*) FROM public.rental")
        assert before <= copied < before + inserted[0] + 1
        assert copied < scalar(servers.source_dsn, "SELECT count(*) FROM public.rental")
        orphans = scalar(
            servers.target_dsn,
            "SELECT count(*) FROM public.payment p LEFT JOIN "
            "public.rental r USING (rental_id) WHERE r.rental_id IS NULL",
        )
        assert orphans == 0
        fks = scalar(
            servers.target_dsn,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated",
        )
        assert fks == scalar(
            servers.source_dsn, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        )
        assert all(c["ok"] for c in out["verification"])
