"""Guarded: a message nobody submitted is refused, the target is never the source nor someone's
own database, a cancelled run never touches it, and what no retry can fix fails at once."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support import query, scalar, state_of, wait_for

pytestmark = pytest.mark.e2e


def project_app(url: str) -> Celery:
    """The project's own Celery app (celeryconfig), on ``url``: what a forger would use."""
    app = Celery(set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = app.conf.result_backend = url
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_max_retries = 0
    return app


def without_password(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


def redis_keys(iso) -> set[bytes]:
    return set(iso.redis.keys("*"))


def test_forged_messages_are_refused_during_a_live_run(servers, isolated) -> None:
    """Without the Redis password no message can be sent; with it, a copy_table with a column
    list of its own, one naming pagila_support, one for an unknown run, a load(force) and a
    replicate nobody submitted are all refused: the run goes on and verifies, nothing forged
    reaches a database, no key is left behind."""
    iso = isolated({})
    iso.pool(1, prefix="ctl", queues="control")
    assert iso.submit("load").returncode == 0
    bare = project_app(without_password(iso.env["PAGILA_REDIS_URL"]))
    bare.conf.result_backend = None  # nothing to wait for: the message must not even leave
    queued = iso.redis.llen("control")
    with pytest.raises(Exception):  # noqa: B017 - kombu's words for NOAUTH vary by version
        bare.send_task("pagila.load", kwargs={"run_id": "load-x", "force": True})
    assert iso.redis.llen("control") == queued
    with pytest.raises(Exception, match=r"(?i)auth"):
        redis.Redis.from_url(without_password(iso.env["PAGILA_REDIS_URL"])).ping()
    app = project_app(iso.env["PAGILA_REDIS_URL"])
    run_id = iso.start("replicate")  # no copy worker yet: its units wait in the queue
    wait_for(lambda: iso.record(run_id).get("plan"), 60, "prepare to plan the run")
    planned = iso.record(run_id)["plan"]["units"]
    film_actor = next(u for u in planned if u["table"] == "film_actor")
    forged = {**film_actor, "columns": ["actor_id", "film_id"]}
    support = {**film_actor, "schema": "pagila_support", "table": "replication_audit"}
    before = redis_keys(iso)
    sent = [
        app.send_task("pagila.copy_table", args=[run_id, "public", "film_actor", forged]),
        app.send_task(
            "pagila.copy_table", args=[run_id, "pagila_support", "replication_audit", support]
        ),
        app.send_task("pagila.copy_table", args=["replicate-nobody", "public", "actor", forged]),
    ]
    load = app.send_task("pagila.load", kwargs={"run_id": run_id, "force": True})
    other = app.send_task("pagila.replicate", kwargs={"run_id": "replicate-20990101T0-forged"})
    iso.pool(1, prefix="cp", queues="copy")
    for result in [*sent, load, other]:
        with pytest.raises(Exception, match=r"^refused: "):
            result.get(timeout=120)
    record = iso.wait_done(run_id)
    assert record["state"] == "succeeded", record.get("error")
    from tests.support import assert_replica

    assert_replica(servers.source_dsn, servers.target_dsn)
    new_keys = {k for k in redis_keys(iso) - before if b"celery-task-meta" not in k}
    assert not [k for k in new_keys if b"nobody" in k or b"forged" in k], new_keys
    assert scalar(servers.target_dsn, "SELECT count(*) FROM pagila_support.replication_audit") == 1


def test_the_target_is_never_the_source(servers, isolated) -> None:
    """A target DSN that reaches the source database: exit 2 with one line, before any lock;
    both databases unchanged."""
    iso = isolated({})
    iso.pool(1, prefix="a")
    assert iso.submit("load").returncode == 0
    for pool in iso.pools:
        pool.stop()
    iso.pools.clear()
    before = state_of(servers.source_dsn)
    target_before = state_of(servers.target_dsn)
    same = servers.source_dsn.replace("127.0.0.1", "localhost")
    iso.env["PAGILA_TARGET_DSN"] = same
    iso.pool(1, prefix="b")
    proc = iso.submit("replicate")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "reaches the source database itself" in lines[0], lines
    assert iso.redis.get("pagila:lock") is None
    assert state_of(servers.source_dsn) == before
    assert state_of(servers.target_dsn) == target_before


def test_a_target_that_never_was_a_replica_is_not_overwritten(servers, isolated) -> None:
    """A target whose public schema holds someone's tables and no replication ledger: refused
    (exit 2, one line, nothing changed) unless the operator passes --overwrite-target."""
    iso = isolated({})
    iso.pool(2, prefix="n")
    assert iso.submit("load").returncode == 0
    query(
        servers.target_dsn,
        "CREATE TABLE public.customers (id int PRIMARY KEY, name text); "
        "INSERT INTO public.customers SELECT g, 'real customer ' || g FROM generate_series(1, 9) g",
    )
    before = state_of(servers.target_dsn)
    source_before = state_of(servers.source_dsn)
    proc = iso.submit("replicate")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "never a replica" in lines[0] and "--overwrite-target" in lines[0]
    assert state_of(servers.target_dsn) == before
    assert state_of(servers.source_dsn) == source_before
    assert iso.redis.get("pagila:lock") is None
    code, out = iso.submit_json("replicate", "--overwrite-target")
    assert code == 0, out
    assert scalar(servers.target_dsn, "SELECT to_regclass('public.customers') IS NULL")


def test_cancel_before_prepare_never_touches_the_target(servers, isolated) -> None:
    """A run cancelled while no worker is up ends at once; when a worker starts later, its
    prepare is refused and the target keeps its DDL and rows."""
    iso = isolated({})
    iso.pool(2, prefix="c")
    assert iso.submit("load").returncode == 0
    assert iso.submit("replicate").returncode == 0
    query(servers.source_dsn, "DELETE FROM public.film_actor WHERE actor_id = 1")
    for pool in iso.pools:
        pool.stop()
    iso.pools.clear()
    before = state_of(servers.target_dsn)
    run_id = iso.start("replicate")  # its first task waits: no worker is up
    proc = iso.submit("cancel", run_id)
    assert proc.returncode == 0 and "cancelled" in proc.stdout, proc.stdout + proc.stderr
    assert iso.redis.get("pagila:lock") is None
    iso.pool(2, prefix="d")
    time.sleep(3)  # the queued prepare is delivered and refused
    assert iso.record(run_id)["state"] == "cancelled"
    assert state_of(servers.target_dsn) == before
    assert iso.redis.llen("copy") == 0


@pytest.mark.parametrize("how", ["submit", "task"])
def test_a_wrong_password_fails_at_once(servers, isolated, how: str) -> None:
    """Workers with a wrong source password and the default 60 s retry delay: the submit is
    refused in under 5 s with one line naming the source (exit 2); a run started anyway fails
    finally at its first attempt, without a retry."""
    wrong = re.sub(r"(://[^:]+:)[^@]+@", r"\1wrong-password@", servers.source_dsn)
    iso = isolated({"PAGILA_SOURCE_DSN": wrong, "PAGILA_RETRY_DELAY": "60"})
    iso.pool(1, prefix="p")
    started = time.monotonic()
    if how == "submit":
        proc = iso.submit("load")
        elapsed = time.monotonic() - started
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "source" in lines[0] and "password" in lines[0], lines
        assert "wrong-password" not in proc.stderr
    else:
        run_id = iso.start("load")
        record: dict[str, Any] = iso.wait_done(run_id, timeout=30)
        elapsed = time.monotonic() - started
        assert record["state"] == "failed" and "password" in record["error"], record
    assert elapsed < 5, elapsed
    assert iso.redis.get("pagila:lock") is None


def test_names_from_the_source_cannot_drive_the_terminal(servers, isolated) -> None:
    """A source table whose name holds an escape sequence is printed escaped, never raw."""
    iso = isolated({})
    iso.pool(2, prefix="e")
    assert iso.submit("load").returncode == 0
    query(servers.source_dsn, 'CREATE TABLE public."evil\x1b[2Jname" (id int)')
    proc = iso.submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "evil\\x1b[2Jname" in proc.stdout + proc.stderr


def test_prepare_refuses_a_record_naming_the_ledgers_schema(servers, isolated) -> None:
    """A run record whose schemas name pagila_support (written with the Redis password, never
    by pagila-submit, which refuses it) is refused by prepare before any write: no snapshot, no
    staging, the target's ledger and copy unchanged."""
    iso = isolated({})
    iso.pool(2)
    assert iso.submit("load").returncode == 0
    assert iso.submit("replicate").returncode == 0
    before = state_of(servers.target_dsn)
    ledger = query(servers.target_dsn, "SELECT * FROM pagila_support.replication_audit")
    run_id = iso.start("replicate", schemas=["pagila_support"])
    app = project_app(iso.env["PAGILA_REDIS_URL"])
    (task_id,) = [t.decode() for t in iso.redis.smembers(f"pagila:run:{run_id}:tasks")]
    with pytest.raises(Exception, match=r"^refused: .*pagila_support"):
        app.AsyncResult(task_id).get(timeout=120)
    assert state_of(servers.target_dsn) == before
    assert query(servers.target_dsn, "SELECT * FROM pagila_support.replication_audit") == ledger
    assert iso.record(run_id)["snapshot"]["id"] is None
