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

from pagila_tasks.base.errors import LockLost
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


def _cut_after_the_last_copy_block(data: bytes) -> bytes:
    return data[: data.rindex(b"\n\\.\n") + 4]


@pytest.mark.parametrize(
    ("edit", "missing"),
    [
        (_empty, "no COPY block at all"),
        (
            _cut_after_payment_p2022_01,
            "no COPY block for " + ", ".join(f"public.payment_p2022_0{m}" for m in range(2, 8)),
        ),
        (
            _cut_after_the_last_copy_block,
            "no setval for public.actor_actor_id_seq, public.address_address_id_seq, ",
        ),
    ],
    ids=["empty", "cut at a COPY boundary", "cut after the last COPY block"],
)
def test_incomplete_data_file_is_refused(
    workers: list[int], servers, workers_files: Path, edit: Callable[[bytes], bytes], missing: str
) -> None:
    """An empty or cut-short data file (no setval lines included) fails (exit 1) naming what is
    missing; nothing changes."""
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
    """A schema file ending with SET default_transaction_read_only loads with its success row."""
    schema = workers_files / "pagila-schema.sql"
    schema.write_bytes(schema.read_bytes() + b"SET default_transaction_read_only = on;\n")
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
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader, pagila_files

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
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader, pagila_files
    from pagila_tasks.run.context import Context

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
    from pagila_tasks.run.lock import RunLock
    from pagila_tasks.run.model import LoadOptions
    from pagila_tasks.run.record import RunRecord

    run_id = f"load-test-{time.time_ns()}"
    options = LoadOptions(**kwargs)
    RunLock(iso.redis, 120).acquire(run_id, "load")
    RunRecord(iso.redis).create(run_id, "load", 600, options=options)
    celery = app.__class__(set_as_current=False)
    celery.config_from_object("celeryconfig")
    celery.conf.broker_url = celery.conf.result_backend = iso.env["PAGILA_REDIS_URL"]
    celery.send_task("pagila.load", kwargs={"run_id": run_id, **options.as_kwargs()})
    return run_id


def test_sql_dir_travels_with_the_run(servers, workers_files: Path, pagila_dir: Path, isolated):
    """A load with sql_dir loads that folder's files, not the worker's PAGILA_SQL_DIR."""
    (workers_files / "pagila-data.sql").write_bytes(b"")  # the worker's own files: unusable
    with isolated({"PAGILA_SQL_ROOTS": str(pagila_dir)}) as iso:
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


# -- files read by PostgreSQL's grammar: nothing smuggled, nothing committed -----------------

VICTIM = (
    "CREATE SCHEMA victim; CREATE TABLE victim.keep (id integer PRIMARY KEY, note text); "
    "INSERT INTO victim.keep VALUES (1, 'one'), (2, 'two');"
)
SMUGGLED = (
    b"SET application_name = E'\\''; DROP TABLE victim.keep; "
    b"CREATE TABLE public.smuggled AS SELECT 1; --'\n"
)


def _before_rental(line: bytes) -> Callable[[bytes, bytes], tuple[bytes, bytes, int]]:
    def edit(schema: bytes, data: bytes) -> tuple[bytes, bytes, int]:
        i = data.index(b"COPY public.rental ")
        return schema, data[:i] + line + data[i:], data[:i].count(b"\n") + 1

    return edit


def _schema_in_begin_commit(schema: bytes, data: bytes) -> tuple[bytes, bytes, int]:
    return b"BEGIN;\n" + schema + b"COMMIT;\n", data, 1


def _set_role_in_schema(schema: bytes, data: bytes) -> tuple[bytes, bytes, int]:
    i = schema.index(b"CREATE TABLE public.actor ")
    return schema[:i] + b"SET ROLE NONE;\n" + schema[i:], data, schema[:i].count(b"\n") + 1


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_before_rental(SMUGGLED), "pagila-data.sql:{line}: statement not allowed in a data file"),
        (
            _before_rental(
                b"SET application_name = E'\\''; COMMIT; "
                b"CREATE TABLE public.smuggled AS SELECT 1; --'\n"
            ),
            "pagila-data.sql:{line}: statement not allowed in a data file",
        ),
        (
            _before_rental(b"SET role = 'pagila';\n"),
            "pagila-data.sql:{line}: statement not allowed",
        ),
        (
            _schema_in_begin_commit,
            "pagila-schema.sql:{line}: statement not allowed in a schema file (transaction",
        ),
        (
            _set_role_in_schema,
            "pagila-schema.sql:{line}: statement not allowed in a schema file (a change of role)",
        ),
    ],
    ids=["E'' smuggling", "hidden COMMIT", "SET role in data", "BEGIN/COMMIT schema", "SET ROLE"],
)
def test_smuggled_statements_are_refused_and_nothing_commits(
    workers: list[int],
    servers,
    workers_files: Path,
    edit: Callable[[bytes, bytes], tuple[bytes, bytes, int]],
    words: str,
) -> None:
    """Statements hidden behind E'' escapes, transaction control and role changes fail the load
    at their file:line; victim.keep stays, public.smuggled never exists, and the source's DDL,
    every table's count and md5 and the sequences are as before."""
    from tests.support import state_of

    dsn = servers.source_dsn
    assert submit("load").returncode == 0
    query(dsn, VICTIM)
    before, history = state_of(dsn, ("public", "victim")), ledger(dsn)
    schema, data = workers_files / "pagila-schema.sql", workers_files / "pagila-data.sql"
    new_schema, new_data, line = edit(schema.read_bytes(), data.read_bytes())
    schema.write_bytes(new_schema)
    data.write_bytes(new_data)
    code, out = submit_json("load")
    assert code == 1, out
    assert words.format(line=line) in out["error"], out["error"]
    assert scalar(dsn, "SELECT count(*) FROM victim.keep") == 2
    assert scalar(dsn, "SELECT to_regclass('public.smuggled') IS NULL") is True
    assert state_of(dsn, ("public", "victim")) == before
    assert_one_failed_row(dsn, history, out["run_id"], words.format(line=line))


def test_a_transaction_ended_by_a_file_is_not_reported_as_loaded(
    servers, workers_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a COMMIT get past the parser, the load fails at once saying its transaction ended,
    and never reports success."""
    from pagila_tasks.base.errors import InputError
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader, pagila_files

    monkeypatch.setattr(loader, "data_only", lambda items, path, tables: items)  # a parser hole
    data = workers_files / "pagila-data.sql"
    data.write_bytes(data.read_bytes() + b"COMMIT;\n")
    s = from_env()
    with pytest.raises(InputError, match="the load's transaction ended here"):
        loader.load(s, pagila_files.locate(s), "unit-commit", False, before_commit=lambda: None)
    assert [r[2] for r in ledger(servers.source_dsn)] == []


# -- --sql-dir stays under PAGILA_SQL_ROOTS ---------------------------------------------------


def test_sql_dir_outside_the_roots_is_refused_alike(
    workers: list[int], servers, workers_files: Path, pagila_dir: Path
) -> None:
    """A --sql-dir that is missing, outside PAGILA_SQL_ROOTS, a symlink out of a root, a folder
    whose file links out of a root, or a ~ path: exit 2 before any lock, one same message."""
    link = workers_files / "link-out"
    sub = workers_files / "file-link-out"
    link.symlink_to(pagila_dir)
    sub.mkdir()
    (sub / "pagila-schema.sql").write_bytes((pagila_dir / "pagila-schema.sql").read_bytes())
    (sub / "pagila-data.sql").symlink_to(pagila_dir / "pagila-data.sql")
    try:
        given = [
            str(workers_files / "missing"),
            str(pagila_dir),
            str(link),
            str(sub),
            "~",
            f"~/{workers_files.name}",
        ]
        lines = set()
        for path in given:
            proc = submit("load", "--sql-dir", path)
            assert proc.returncode == 2, (path, proc.stdout, proc.stderr)
            lines.add(proc.stderr.strip().replace(path, "X"))
        assert lines == {
            f"pagila-submit: --sql-dir X: not an allowed folder on worker host "
            f"{socket.gethostname()} (see PAGILA_SQL_ROOTS)"
        }
        from tests.support import redis_client

        assert redis_client().get("pagila:lock") is None
        assert (
            scalar(servers.source_dsn, "SELECT to_regclass('pagila_support.pagila_load_audit')")
            is None
        )
    finally:
        link.unlink()
        (sub / "pagila-data.sql").unlink()
        (sub / "pagila-schema.sql").unlink()
        sub.rmdir()


@pytest.mark.parametrize("where", ["missing", "outside the roots"])
def test_sql_dir_refused_by_the_load_task_too(
    servers, tmp_path: Path, pagila_dir: Path, isolated, where: str
) -> None:
    """A load task whose sql_dir is missing or outside the roots (a message that skipped the
    submit checks) fails with the same message, and its failed row fingerprints nothing there."""
    folder = tmp_path / "not-on-this-worker" if where == "missing" else pagila_dir
    with isolated({}) as iso:
        iso.pool(1, prefix="dir", queues="control")
        record = iso.wait_done(send_load(iso, sql_dir=str(folder)))
    assert record["state"] == "failed"
    assert record["error"] == (
        f"--sql-dir {folder}: not an allowed folder on worker host {socket.gethostname()} "
        "(see PAGILA_SQL_ROOTS)"
    ), record["error"]
    assert [(r[2], r[4]) for r in ledger(servers.source_dsn)] == [(False, None)]


# -- a load never wipes a database it did not load --------------------------------------------

FOREIGN = """
CREATE TABLE public.mine (id integer PRIMARY KEY, note text);
INSERT INTO public.mine VALUES (1, 'theirs'), (2, 'also theirs');
CREATE SCHEMA app;
CREATE VIEW app.mine_view AS SELECT * FROM public.mine;
CREATE TABLE app.child (id integer PRIMARY KEY, mine_id integer REFERENCES public.mine);
INSERT INTO app.child VALUES (10, 1);
"""


@pytest.mark.parametrize("how", ["--force-reset", "PAGILA_FORCE_RESET=1"])
def test_a_database_with_its_own_public_is_not_reset(workers: list[int], servers, how: str) -> None:
    """A plain load into a source whose public holds its own table, with a view and a foreign key
    over it in another schema, exits 2 listing them and naming the flag, changing nothing; with
    --force-reset (or PAGILA_FORCE_RESET=1) it loads and its result lists what it dropped."""
    from tests.support import redis_client, state_of

    dsn = servers.source_dsn
    query(dsn, FOREIGN)
    before = state_of(dsn, ("public", "app"))
    proc = submit("load")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line, line
    for words in ("table public.mine", "view app.mine_view", "on app.child", "--force-reset"):
        assert words in line, line
    assert state_of(dsn, ("public", "app")) == before
    assert redis_client().get("pagila:lock") is None

    if how == "--force-reset":
        proc = submit("load", "--force-reset")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "--force-reset dropped: " in proc.stdout and "table public.mine" in proc.stdout
        run_id = proc.stdout.strip().splitlines()[-1].split()[1].rstrip(":")
        code, out = submit_json("status", run_id)
    else:
        code, out = submit_json("load", env={"PAGILA_FORCE_RESET": "1"})
    assert code == 0, out
    assert out["options"]["force_reset"] is True
    dropped = out["result"]["reset_dropped"]
    assert "table public.mine" in dropped and "view app.mine_view" in dropped, dropped
    assert scalar(dsn, "SELECT to_regclass('public.mine') IS NULL") is True
    assert scalar(dsn, "SELECT to_regclass('app.mine_view') IS NULL") is True
    assert query(dsn, "SELECT id, mine_id FROM app.child") == [(10, 1)]
    assert scalar(dsn, "SELECT count(*) FROM public.rental") == 16044


def test_the_load_transaction_checks_public_again(servers) -> None:
    """A load whose source gained a foreign object after its checks refuses inside its own
    transaction, before the reset; nothing changes."""
    from pagila_tasks.base.errors import UsageError
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader, pagila_files
    from tests.support import state_of

    s = from_env()
    files = pagila_files.locate(s)
    dsn = servers.source_dsn
    loader.load(s, files, "unit-first", False, before_commit=lambda: None)
    query(dsn, "CREATE SCHEMA app; CREATE VIEW app.actors AS SELECT * FROM public.actor")
    before = state_of(dsn, ("public", "app"))
    with pytest.raises(UsageError, match=r"depend on public: view app\.actors .*--force-reset"):
        loader.load(s, files, "unit-second", True, before_commit=lambda: None)
    assert state_of(dsn, ("public", "app")) == before
    result = loader.load(s, files, "unit-forced", True, lambda: None, force_reset=True)
    assert result.reset_dropped == ["view app.actors"]


def test_a_second_load_of_changed_files_goes_ahead(
    workers: list[int], servers, workers_files: Path
) -> None:
    """A plain load of changed files into a source this project loaded resets public as before:
    its manifest says every object there is the project's."""
    dsn = servers.source_dsn
    assert submit("load").returncode == 0
    assert scalar(dsn, "SELECT count(*) FROM pagila_support.load_manifest") > 100
    data = workers_files / "pagila-data.sql"
    data.write_bytes(data.read_bytes().replace(b"PENELOPE\tGUINESS", b"PENELOPE\tOTHER", 1))
    code, out = submit_json("load")
    assert code == 0, out
    assert out["result"]["status"] == "loaded" and out["result"]["reset_dropped"] == []
    assert scalar(dsn, "SELECT last_name FROM public.actor WHERE actor_id = 1") == "OTHER"


def test_a_source_loaded_by_an_earlier_version(
    workers: list[int], servers, workers_files: Path
) -> None:
    """A source with a load ledger and no manifest counts as the project's when public holds only
    the pinned files' objects: a plain load goes ahead; with a table of its own it is refused."""
    dsn = servers.source_dsn
    assert submit("load").returncode == 0
    query(dsn, "DROP TABLE pagila_support.load_manifest")  # as an earlier version left it
    data = workers_files / "pagila-data.sql"
    data.write_bytes(data.read_bytes().replace(b"PENELOPE\tGUINESS", b"PENELOPE\tOTHER", 1))
    code, out = submit_json("load")
    assert code == 0, out
    query(dsn, "DROP TABLE pagila_support.load_manifest")
    query(dsn, "CREATE TABLE public.extra (id integer)")
    (workers_files / "pagila-data.sql").write_bytes(data.read_bytes() + b"\n")
    proc = submit("load")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "table public.extra (1)" in proc.stderr and "--force-reset" in proc.stderr


def test_pinned_public_objects_are_what_the_pinned_files_create(servers) -> None:
    """sql/pinned_public_objects.sql lists exactly the objects a load of the pinned files leaves
    in public (and the manifest records them)."""
    import psycopg2 as pg

    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader, ownership, pagila_files
    from pagila_tasks.pg import sqlfiles

    s = from_env()
    loader.load(s, pagila_files.locate(s), "unit-pinned", False, before_commit=lambda: None)
    conn = pg.connect(servers.source_dsn)
    try:
        with conn.cursor() as cur:
            created = ownership.public_objects(cur)
            cur.execute(sqlfiles.query("pinned_public_objects"))
            assert set(cur.fetchall()) == created
            cur.execute(sqlfiles.query("load_manifest_rows"))
            assert set(cur.fetchall()) == created
    finally:
        conn.close()


def test_the_commit_goes_ahead_only_in_the_transaction_the_load_opened(servers) -> None:
    """TransactionMark refuses a commit once the transaction it marked has ended, even if a new
    one is open on the same session."""
    from pagila_tasks.base.errors import FinalError
    from pagila_tasks.load.loader import TransactionMark

    conn = psycopg2.connect(servers.source_dsn)
    try:
        mark = TransactionMark(conn)
        mark.check()
        with conn.cursor() as cur:
            cur.execute("COMMIT")  # what a hidden COMMIT in a file does
        with pytest.raises(FinalError, match="no longer open"):
            mark.check()
        with conn.cursor() as cur:
            cur.execute("BEGIN; SELECT pg_current_xact_id()")
        with pytest.raises(FinalError, match="was ended by a file"):
            mark.check()
    finally:
        conn.close()


def test_a_forged_force_reset_is_refused(servers, isolated) -> None:
    """A load message carrying force_reset for a run submitted without it is refused before it
    touches the source."""
    from pagila_tasks.base.errors import Refused
    from pagila_tasks.config import from_env
    from pagila_tasks.load import loader
    from pagila_tasks.run.context import Context
    from pagila_tasks.run.model import LoadOptions

    query(servers.source_dsn, FOREIGN)
    with isolated({}) as iso:
        run_id = iso.start("load")  # recorded with force_reset False; no worker takes it
        ctx = Context(from_env())
        with pytest.raises(Refused, match="force_reset=True is not what was submitted"):
            loader.run(ctx, run_id, LoadOptions(force_reset=True), "forger")
    assert scalar(servers.source_dsn, "SELECT count(*) FROM public.mine") == 2
