"""What a load refuses and what its ledger says: real PostgreSQL, Redis and worker processes.

A data file must carry every table the schema file creates and nothing but data; a load's
success row commits with its data; a failed run has exactly one failed row, written after the
rollback, however many times it was tried.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from pagila_tasks.errors import LockLost
from tests.isolated import Isolated
from tests.support import query, scalar, sequences, submit, submit_json, table_fingerprints

pytestmark = pytest.mark.e2e

LEDGER = "pagila_support.pagila_load_audit"


def ledger(dsn: str) -> list[tuple[Any, ...]]:
    """Every load ledger row: id, run id, success, error and data file sha256, oldest first."""
    return query(dsn, f"SELECT id, run_id, succeeded, error, data_sha256 FROM {LEDGER} ORDER BY id")


def source_state(dsn: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """Every table's count and md5, and every sequence of public: what "unchanged" compares."""
    return table_fingerprints(dsn), sequences(dsn)


def assert_one_failed_row(dsn: str, history: list[tuple], run_id: str, words: str) -> tuple:
    """The earlier rows are intact and the run added exactly one row: failed, naming ``words``."""
    rows = ledger(dsn)
    assert rows[: len(history)] == history, "ledger history changed"
    new = rows[len(history) :]
    assert [(r[1], r[2]) for r in new] == [(run_id, False)], new
    assert words in new[0][3], new[0][3]
    return new[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the data file must carry what the schema file creates -----------------------------------


def _empty(data: bytes) -> bytes:
    return b""


def _cut_after_payment_p2022_01(data: bytes) -> bytes:
    i = data.index(b"COPY public.payment_p2022_01 ")
    return data[: data.index(b"\n\\.\n", i) + 4]


@pytest.mark.parametrize(
    ("edit", "missing"),
    [
        (_empty, "no COPY block at all"),
        (
            _cut_after_payment_p2022_01,
            "no COPY block for " + ", ".join(f"public.payment_p2022_0{m}" for m in range(2, 8)),
        ),
    ],
    ids=["empty", "cut at a COPY boundary"],
)
def test_incomplete_data_file_is_refused(
    workers: list[int], servers, workers_files: Path, edit: Callable[[bytes], bytes], missing: str
) -> None:
    """An empty or cut-short data file fails (exit 1) naming what is missing; nothing changes."""
    assert submit("load").returncode == 0
    before, history = source_state(servers.source_dsn), ledger(servers.source_dsn)
    data = workers_files / "pagila-data.sql"
    data.write_bytes(edit(data.read_bytes()))
    code, out = submit_json("load")
    assert code == 1, out
    assert f"pagila-data.sql: {missing}" in out["error"], out["error"]
    assert source_state(servers.source_dsn) == before
    row = assert_one_failed_row(servers.source_dsn, history, out["run_id"], missing)
    assert row[4] == sha256(data)


# -- nothing but data in a data file ----------------------------------------------------------


def _drop_ledger_at_end(data: bytes) -> tuple[bytes, int]:
    return data + b"DROP SCHEMA pagila_support CASCADE;\n", data.count(b"\n") + 1


def _create_table_in_middle(data: bytes) -> tuple[bytes, int]:
    i = data.index(b"COPY public.rental ")
    return data[:i] + b"CREATE TABLE public.intruder (id integer);\n" + data[i:], (
        data[:i].count(b"\n") + 1
    )


def _rewind_ledger_sequence(data: bytes) -> tuple[bytes, int]:
    setval = b"SELECT pg_catalog.setval('pagila_support.pagila_load_audit_id_seq', 1, false);\n"
    return data + setval, data.count(b"\n") + 1


@pytest.mark.parametrize(
    "edit",
    [_drop_ledger_at_end, _create_table_in_middle, _rewind_ledger_sequence],
    ids=["DROP SCHEMA at the end", "CREATE TABLE in the middle", "setval of the ledger"],
)
def test_statement_not_allowed_in_a_data_file(
    workers: list[int], servers, workers_files: Path, edit: Callable[[bytes], tuple[bytes, int]]
) -> None:
    """A data file statement that is not data fails at its line before it runs; nothing changes."""
    assert submit("load").returncode == 0
    before, history = source_state(servers.source_dsn), ledger(servers.source_dsn)
    data = workers_files / "pagila-data.sql"
    edited, line = edit(data.read_bytes())
    data.write_bytes(edited)
    code, out = submit_json("load")
    assert code == 1, out
    words = f"pagila-data.sql:{line}: statement not allowed in a data file"
    assert words in out["error"], out["error"]
    assert source_state(servers.source_dsn) == before
    assert_one_failed_row(servers.source_dsn, history, out["run_id"], words)


# -- the success row commits with the data ----------------------------------------------------


def test_success_row_survives_a_session_left_read_only(
    workers: list[int], servers, workers_files: Path
) -> None:
    """A data file ending with SET default_transaction_read_only loads with its success row."""
    data = workers_files / "pagila-data.sql"
    data.write_bytes(data.read_bytes() + b"SET default_transaction_read_only = on;\n")
    code, out = submit_json("load")
    assert code == 0, out
    assert [(r[1], r[2]) for r in ledger(servers.source_dsn)] == [(out["run_id"], True)]
    assert scalar(servers.source_dsn, "SELECT count(*) FROM public.rental") == 16044


def test_failing_last_statement_leaves_no_success_row(
    workers: list[int], servers, workers_files: Path
) -> None:
    """A data file whose last setval fails rolls back: no success row, one failed row."""
    assert submit("load").returncode == 0
    before, history = source_state(servers.source_dsn), ledger(servers.source_dsn)
    data = workers_files / "pagila-data.sql"
    data.write_bytes(
        data.read_bytes() + b"SELECT pg_catalog.setval('public.no_such_seq', 1, true);\n"
    )
    code, out = submit_json("load")
    assert code == 1, out
    assert "no_such_seq" in out["error"]
    assert source_state(servers.source_dsn) == before
    assert_one_failed_row(servers.source_dsn, history, out["run_id"], "no_such_seq")


def test_success_row_is_written_before_the_commit(servers) -> None:
    """The success row is inserted in the load's open transaction; a refused commit keeps none."""
    from pagila_tasks import loader, pagila_files
    from pagila_tasks.config import from_env

    s = from_env()
    files = pagila_files.locate(s)
    dsn = servers.source_dsn
    seen: dict[str, int] = {}

    def look() -> None:
        seen["row_locks"] = scalar(
            dsn,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = 'pagila-load unit-ok' AND l.mode = 'RowExclusiveLock' "
            f"AND l.relation = '{LEDGER}'::regclass",
        )
        seen["visible"] = scalar(dsn, f"SELECT count(*) FROM {LEDGER} WHERE run_id = 'unit-ok'")

    loader.load(s, files, "unit-ok", False, before_commit=look)
    assert seen == {"row_locks": 1, "visible": 0}
    assert [(r[1], r[2]) for r in ledger(dsn)] == [("unit-ok", True)]

    before = source_state(dsn)

    def refuse() -> None:
        raise LockLost("run unit-refused no longer holds the lock")

    with pytest.raises(LockLost):
        loader.load(s, files, "unit-refused", True, before_commit=refuse)
    assert [(r[1], r[2]) for r in ledger(dsn)] == [("unit-ok", True)]
    assert source_state(dsn) == before


def test_failed_row_once_per_run_never_for_a_committed_run(servers) -> None:
    """record_failure writes one row per run, however often called, and none for a committed run."""
    from pagila_tasks import loader, pagila_files
    from pagila_tasks.config import from_env
    from pagila_tasks.context import Context

    s = from_env()
    ctx = Context(s)
    loader.load(s, pagila_files.locate(s), "unit-ok", False, before_commit=lambda: None)
    for _ in range(2):
        loader.record_failure(ctx, "unit-failed", LockLost("lost"))
        loader.record_failure(ctx, "unit-ok", LockLost("a lost answer to the commit"))
    rows = ledger(servers.source_dsn)
    assert [(r[1], r[2]) for r in rows] == [("unit-ok", True), ("unit-failed", False)]
    assert rows[1][4] == pagila_files.sha256_of(pagila_files.locate(s).data)


# -- one failed row per run, not per attempt --------------------------------------------------


def test_transient_failure_retried_then_one_failed_row(
    workers: list[int], servers, isolated
) -> None:
    """A load that times out on a lock every time is retried, then fails with one failed row."""
    dsn = servers.source_dsn
    assert submit("load").returncode == 0
    history = ledger(dsn)
    holder = psycopg2.connect(dsn)  # reset_public's DROP SCHEMA public waits on this lock
    attempts: set[int] = set()
    result: list[tuple[int, dict]] = []
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE public.actor IN ACCESS SHARE MODE")
        env = {
            "PAGILA_RETRY_MAX": "2",
            "PAGILA_RETRY_DELAY": "0.2",
            # statement_timeout and lock_timeout: 57014 or 55P03, both classes retried
            "PAGILA_STATEMENT_TIMEOUT_MS": "1000",
        }
        with isolated(env) as iso:
            iso.pool(1, prefix="retry", queues="control")
            waiting = threading.Thread(
                target=lambda: result.append(iso.submit_json("load", "--force", timeout=120))
            )
            waiting.start()
            while waiting.is_alive():  # each attempt is a new connection waiting on the lock
                attempts.update(
                    pid
                    for (pid,) in query(
                        dsn,
                        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s "
                        "AND wait_event_type = 'Lock'",
                        ("pagila-load %",),
                    )
                )
                time.sleep(0.05)
            waiting.join()
    finally:
        holder.rollback()
        holder.close()
    code, out = result[0]
    assert code == 1, out
    assert "due to statement timeout" in out["error"] or "due to lock timeout" in out["error"]
    assert len(attempts) == 3, attempts  # the first try and PAGILA_RETRY_MAX retries
    assert_one_failed_row(dsn, history, out["run_id"], "timeout")


# -- the run's own folder of files (sql_dir) --------------------------------------------------


def send_load(iso: Isolated, **kwargs: Any) -> str:
    """Start a load as the submit script does (lock, run record) with the project's own app."""
    from pagila_tasks.app import app
    from pagila_tasks.lock import RunLock
    from pagila_tasks.progress import Progress

    run_id = f"load-test-{time.time_ns()}"
    options = {"force": False, "sql_dir": None, **kwargs}
    RunLock(iso.redis, 120).acquire(run_id, "load")
    Progress(iso.redis).create(run_id, "load", 600, options=options)
    celery = app.__class__(set_as_current=False)
    celery.config_from_object("celeryconfig")
    celery.conf.broker_url = celery.conf.result_backend = iso.env["PAGILA_REDIS_URL"]
    celery.send_task("pagila.load", kwargs={"run_id": run_id, **options})
    return run_id


def test_sql_dir_travels_with_the_run(servers, workers_files: Path, pagila_dir: Path, isolated):
    """A load with sql_dir loads that folder's files, not the worker's PAGILA_SQL_DIR."""
    (workers_files / "pagila-data.sql").write_bytes(b"")  # the worker's own files: unusable
    with isolated({}) as iso:
        iso.pool(1, prefix="dir", queues="control")
        record = iso.wait_done(send_load(iso, sql_dir=str(pagila_dir)))
    assert record["state"] == "succeeded", record.get("error")
    assert [(r[2], r[4]) for r in ledger(servers.source_dsn)] == [
        (True, sha256(pagila_dir / "pagila-data.sql"))
    ]


def test_sql_dir_missing_on_the_worker_fails_once(servers, tmp_path: Path, isolated) -> None:
    """A load whose sql_dir is not on the worker fails at once naming host and folder, one row."""
    missing = tmp_path / "not-on-this-worker"
    with isolated({}) as iso:
        iso.pool(1, prefix="dir", queues="control")
        run_id = send_load(iso, sql_dir=str(missing))
        record = iso.wait_done(run_id)
        assert iso.redis.get("pagila:lock") is None
    assert record["state"] == "failed"
    assert str(missing) in record["error"], record["error"]
    assert f"worker host {socket.gethostname()}" in record["error"], record["error"]
    rows = ledger(servers.source_dsn)
    assert [(r[1], r[2]) for r in rows] == [(run_id, False)]
    assert str(missing) in rows[0][3]
