"""Warm connections and the spare snapshot holder, against the session's real servers."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator

import pytest

from pagila_tasks import config
from pagila_tasks.base.errors import UsageError
from pagila_tasks.pg import warm
from pagila_tasks.replication import snapshot
from pagila_tasks.run.model import ReplicateOptions
from pagila_tasks.run.record import RunRecord
from pagila_tasks.submission import preflight
from tests.support import query, redis_client, wait_for

# The test process reads the session servers from its environment (the settings,
# tests.support.redis_client): asking for them starts them and resets them per test.
pytestmark = pytest.mark.usefixtures("servers")


@pytest.fixture
def settings() -> Iterator[config.Settings]:
    warm.close_all()
    yield config.from_env()
    warm.close_all()


def _backend(s: config.Settings, name: str) -> int:
    with warm.borrow(s.target_dsn, s, name) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(), current_setting('application_name')")
        pid, app = cur.fetchone()
        assert app == name  # renamed for its new user on reuse
        return pid


def test_a_kept_connection_is_reused_and_renamed(settings) -> None:
    first = _backend(settings, "pagila-test one")
    assert _backend(settings, "pagila-test two") == first


def test_a_terminated_connection_is_replaced_not_reused(servers, settings) -> None:
    first = _backend(settings, "pagila-test one")
    query(servers.target_dsn, "SELECT pg_terminate_backend(%s)", (first,))
    gone = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
    wait_for(lambda: not query(servers.target_dsn, gone, (first,)), 10, "the backend to go")
    second = _backend(settings, "pagila-test two")
    assert second != first


def test_a_connection_that_raised_is_closed(settings) -> None:
    with (
        pytest.raises(RuntimeError),
        warm.borrow(settings.target_dsn, settings, "pagila-test fail") as conn,
    ):
        raised = conn
        raise RuntimeError("boom")
    assert raised.closed
    with warm.borrow(settings.target_dsn, settings, "pagila-test next") as conn:
        assert conn is not raised


def test_an_open_transaction_is_rolled_back_before_reuse(settings) -> None:
    s = settings
    with warm.borrow(s.target_dsn, s, "pagila-test a") as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE pagila_warm_probe (x int)")  # never committed
    with warm.borrow(s.target_dsn, s, "pagila-test b") as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('pg_temp.pagila_warm_probe')")
        assert cur.fetchone()[0] is None


def test_turned_off_every_use_gets_a_new_backend(settings) -> None:
    cold = dataclasses.replace(settings, warm_connections=False)
    assert _backend(cold, "pagila-test one") != _backend(cold, "pagila-test two")


def test_a_spare_holder_takes_a_run_and_exits_without_one() -> None:
    """The spare becomes the run's holder (its pid recorded); a spare nobody needs just exits."""
    client = redis_client()
    snapshot.prestart()
    spare = snapshot._spare
    assert spare is not None and spare.poll() is None
    run_id = "replicate-test-spare"
    client.hset(f"pagila:run:{run_id}", mapping={"state": "running"})
    try:
        snap = snapshot.start_holder(RunRecord(client), run_id)
        assert snap
        assert int(client.hget(f"pagila:run:{run_id}", "snapshot_pid")) == spare.pid
        client.hset(f"pagila:run:{run_id}", "state", "succeeded")
        assert spare.wait(timeout=30) == 0  # it leaves once the run is over
    finally:
        client.delete(f"pagila:run:{run_id}")
    snapshot.prestart()
    idle = snapshot._spare
    assert idle is not None and idle.pid != spare.pid
    snapshot._spare = None
    idle.stdin.close()  # what its worker's exit looks like to it
    try:
        assert idle.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        idle.kill()
        raise


def test_the_checks_before_a_run_keep_their_connections_warm(settings) -> None:
    """The workers' checks (``pagila.preflight``, ahead of every run) borrow the process's warm
    connections: a second check opens no new backend; a server they cannot reach is named on
    one line, as before."""

    def backends() -> set[int]:
        rows = query(
            settings.target_dsn,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pagila-preflight'",
        )
        return {r[0] for r in rows}

    before = backends()  # any other process's, left out
    preflight.check(settings, "replicate", ReplicateOptions())
    first = backends() - before
    assert len(first) == 1, first  # idle, kept for the next check
    preflight.check(settings, "replicate", ReplicateOptions())
    assert backends() - before == first
    closed = dataclasses.replace(settings, target_dsn="postgresql://nobody@127.0.0.1:9/nothing")
    with pytest.raises(UsageError) as refused:
        preflight.check(closed, "replicate", ReplicateOptions())
    said = str(refused.value)
    assert said.startswith("cannot connect to the target (127.0.0.1:9/nothing)"), said
    assert "\n" not in said
