"""Session servers, worker subprocesses and per-test resets for the whole suite.

Tiers by folder: ``unit`` (no server at all), ``integration`` (real servers, no worker
subprocesses), ``e2e`` (real ``celery -A pagila_tasks worker`` subprocesses) and ``faults``.

Servers: throwaway ones from the stack's own code (two PostgreSQL clusters and a Redis in a
temporary state folder), or external ones when ``PAGILA_TEST_SOURCE_DSN``,
``PAGILA_TEST_TARGET_DSN`` and ``PAGILA_TEST_REDIS_URL`` are all set. They start lazily, the
first time a test or fixture asks for ``servers``, so a run of the unit tier starts none. By
then test modules may have imported the package with the default addresses (the settings are
read once and cached, celeryconfig at import): starting the servers sets the environment,
clears the cached settings and reloads celeryconfig and the app's configuration, so the one
configuration is built from them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

# pytest-celery 1.x shadows Celery's in-process fixtures with Docker-based ones; these imports
# restore Celery's own (celery/pytest-celery#442), so an in-process worker needs no Docker.
from celery.contrib.pytest import (  # noqa: F401
    celery_app,
    celery_config,
    celery_enable_logging,
    celery_includes,
    celery_parameters,
    celery_worker,
    celery_worker_parameters,
    celery_worker_pool,
    depends_on_current_app,
    use_celery_app_trap,
)

from tests.support import SHARED_PAGILA, let_servers_cross

TEST_ENV = {
    "PAGILA_RETRY_DELAY": "0.5",  # tests shorten the delay, never the count
    "PAGILA_CONNECT_TIMEOUT": "5",
}


@dataclass
class Servers:
    """What the suite runs against."""

    source_dsn: str
    target_dsn: str
    redis_url: str
    admin_source: str | None = None
    admin_target: str | None = None
    stack: object | None = None
    state_dir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)


_SERVERS: Servers | None = None
_SYSTEM_TEMP = tempfile.gettempdir()
"""The temporary folder before the session points ``tempfile`` at pytest's own."""


def _start_servers() -> Servers:
    names = ("PAGILA_TEST_SOURCE_DSN", "PAGILA_TEST_TARGET_DSN", "PAGILA_TEST_REDIS_URL")
    if all(os.environ.get(n) for n in names):
        return Servers(*(os.environ[n] for n in names))
    from pagila_stack.stack import Stack

    # Not under pytest's base temp (0700, see _temporary_folders_under_pytest): the server user
    # must reach the state folder, and the servers start once tests already run.
    state = Path(tempfile.mkdtemp(prefix="pagila-test-", dir=_SYSTEM_TEMP))
    stack = Stack(state, servers=os.environ.get("PAGILA_STACK_SERVERS", "auto"))
    stack.up(workers=0)
    env = stack.env()
    return Servers(
        env["PAGILA_SOURCE_DSN"],
        env["PAGILA_TARGET_DSN"],
        env["PAGILA_REDIS_URL"],
        stack.admin_dsn("source"),
        stack.admin_dsn("target"),
        stack,
        state,
    )


def _point_the_configuration_at(servers: Servers) -> None:
    """Set the servers' addresses in the environment and rebuild what was read before."""
    os.environ.update(
        PAGILA_SOURCE_DSN=servers.source_dsn,
        PAGILA_TARGET_DSN=servers.target_dsn,
        PAGILA_REDIS_URL=servers.redis_url,
    )
    from pagila_tasks.config import settings

    settings.cache_clear()
    if "celeryconfig" in sys.modules:
        importlib.reload(sys.modules["celeryconfig"])
    app_module = sys.modules.get("pagila_tasks.app")
    if app_module is not None and app_module.app.configured:
        app_module.app.config_from_object("celeryconfig", force=True)
    tasks_module = sys.modules.get("pagila_tasks.tasks")
    if tasks_module is not None:
        tasks_module.PagilaTask._ctx = None  # built from the settings on next use


def pytest_configure(config: pytest.Config) -> None:
    """Test settings and a working copy of the Pagila files; no server starts here."""
    if hasattr(config, "workerinput"):
        return
    os.environ.update(TEST_ENV)
    os.environ.setdefault("PAGILA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "pagila-cache"))
    if not os.environ.get("PAGILA_SQL_DIR") and SHARED_PAGILA.is_dir():
        os.environ["PAGILA_SQL_DIR"] = str(SHARED_PAGILA)
    # Workers read the files the suite can swap: a working copy of the pinned files.
    from pagila_tasks.config import from_env
    from pagila_tasks.load import pagila_files

    pinned = pagila_files.locate(from_env())
    work = Path(tempfile.mkdtemp(prefix="pagila-files-"))
    for path in (pinned.schema, pinned.data):
        shutil.copy(path, work / path.name)
    os.environ["PAGILA_PINNED_DIR"] = str(pinned.schema.parent)
    os.environ["PAGILA_SQL_DIR"] = str(work)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop every server and worker the session started; remove the working copy of the files."""
    work = os.environ.get("PAGILA_SQL_DIR", "")
    if Path(work).name.startswith("pagila-files-"):
        shutil.rmtree(work, ignore_errors=True)
    if _SERVERS is not None and _SERVERS.stack is not None:
        _SERVERS.stack.down(purge=True)  # type: ignore[attr-defined]
        if _SERVERS.state_dir is not None:
            shutil.rmtree(_SERVERS.state_dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Folders the tests make for worker and Flower logs go under pytest's base temp, which
    pytest prunes to its last three sessions, instead of piling up in /tmp."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.getbasetemp())
    yield
    tempfile.tempdir = before


@pytest.fixture(autouse=True)
def _server_user_crosses_tmp_path(request: pytest.FixtureRequest) -> None:
    """Under root, a test's ``tmp_path`` (where stack tests put servers run as the server
    user) and pytest's folders above it are crossable by others, as a user would have to make
    them: the stack refuses to widen a private folder itself."""
    if "tmp_path" in request.fixturenames:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        let_servers_cross(request.getfixturevalue("tmp_path"), factory.getbasetemp().parent)


@pytest.fixture(scope="session")
def servers() -> Servers:
    """The session's servers, started on first use and stopped when the session ends."""
    global _SERVERS
    if _SERVERS is None:
        _SERVERS = _start_servers()
        _point_the_configuration_at(_SERVERS)
    return _SERVERS


def reset_database(dsn: str, schemas: tuple[str, ...]) -> None:
    """Drop the given schemas (and recreate public) as the database owner."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND usename = current_user"
            )
            for (pid,) in cur.fetchall():
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
                "AND nspname <> 'information_schema' AND nspowner = "
                "(SELECT oid FROM pg_roles WHERE rolname = current_user) "
                "OR nspname = ANY(%s)",
                (list(schemas),),
            )
            for (name,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            cur.execute("CREATE SCHEMA IF NOT EXISTS public")
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    """Every test that uses the servers starts with empty databases and an empty Redis
    database; a test that does not ask for them (the whole unit tier) touches none."""
    if "servers" not in request.fixturenames:
        return
    servers: Servers = request.getfixturevalue("servers")
    redis.Redis.from_url(servers.redis_url).flushdb()
    reset_database(servers.source_dsn, ("public", "pagila_support"))
    reset_database(servers.target_dsn, ("public", "pagila_support"))


@pytest.fixture(scope="session")
def workers(servers: Servers) -> Iterator[list[int]]:
    """Two real worker processes (``celery -A pagila_tasks worker``), w1 and w2."""
    from tests.workers import WorkerPool

    pool = WorkerPool(servers, prefix="w")
    pool.start(2)
    yield pool.pids
    pool.stop()


@pytest.fixture
def isolated(servers: Servers, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``isolated(env)``: workers and a free Redis database of the test's own, with ``env`` set.

    The one way a test gets settings of its own (a short TTL, another source): its variables
    reach its workers and its submits, and, through ``monkeypatch``, the test process; its
    Redis database is found empty and emptied again afterwards.
    """
    from tests.isolated import Isolated

    made: list[Isolated] = []

    def make(env: dict[str, str] | None = None) -> Isolated:
        iso = Isolated(servers, env or {}, monkeypatch)
        made.append(iso)
        return iso

    yield make
    for iso in made:
        iso.close()


@pytest.fixture(scope="session")
def pagila_dir() -> Path:
    """The folder with the pinned, unmodified Pagila files."""
    return Path(os.environ["PAGILA_PINNED_DIR"])


@pytest.fixture
def workers_files(pagila_dir: Path) -> Iterator[Path]:
    """The folder the workers load from (PAGILA_SQL_DIR); restored to the pinned files after."""
    work = Path(os.environ["PAGILA_SQL_DIR"])
    yield work
    for name in ("pagila-schema.sql", "pagila-data.sql"):
        shutil.copy(pagila_dir / name, work / name)
