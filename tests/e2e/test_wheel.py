"""The package as it is installed: a bare source tree, the editable install and a built wheel."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import redis

from pagila_tasks.pg import pgtools, sqlfiles
from tests.support import ROOT, WHEEL_SOURCES, completed, free_redis_url, probe, run, scalar
from tests.workers import WorkerPool


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built by ``pip wheel --no-deps`` from exactly what the Dockerfile's builder copies.

    Built from a copy so that a stale build/ folder or cache in the checkout cannot leak in.
    """
    src = tmp_path_factory.mktemp("wheel-src")
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("wheel-dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--wheel-dir", dist, src], dist)
    (built,) = dist.glob("pagila_tasks-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its runtime dependencies, versions from the lock."""
    where = tmp_path_factory.mktemp("wheel-venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "venv", where / "venv"], where, env)
    python = where / "venv" / "bin" / "python"
    pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", "-c", ROOT / "requirements.lock", wheel], where, env)
    return where / "venv"


@pytest.mark.e2e
@pytest.mark.slow
def test_wheel_carries_every_module_the_sql_and_celeryconfig(wheel: Path) -> None:
    """The wheel holds every module of the checkout, sql/*.sql as pagila_tasks/sql/ and
    celeryconfig.py (the packages are listed by hand in pyproject.toml)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pagila_tasks").rglob("*.py")}
    queries = {f"pagila_tasks/sql/{p.name}" for p in (ROOT / "sql").glob("*.sql")}
    assert len(queries) > 10
    want = modules | queries | {"celeryconfig.py", "pagila_tasks/py.typed"}
    assert want <= names, sorted(want - names)
    assert not [n for n in names if n.startswith(("sql/", "tests/", "bench/", "scripts/"))]
    dev_stack = [n for n in names if "pagila_stack" in n or n.startswith("pagila_tasks/stack/")]
    assert not dev_stack, dev_stack  # the dev stack is its own distribution (devstack/)


@pytest.mark.e2e
@pytest.mark.slow
def test_wheel_in_a_fresh_venv_loads_and_replicates(venv: Path, servers, tmp_path: Path) -> None:
    """Workers and pagila-submit from a venv holding only the wheel (no checkout on the path)
    load Pagila and replicate it."""
    bin_dir = venv / "bin"
    url = free_redis_url(servers.redis_url)
    major = int(scalar(servers.source_dsn, "SHOW server_version_num")) // 10000
    pg_dump = pgtools.find_tool("pg_dump", major, os.environ.get("PAGILA_PG_DUMP"))
    extra = {
        "PAGILA_REDIS_URL": url,
        "PAGILA_PG_DUMP": str(pg_dump),  # the fresh venv has no embedded extra to find one in
        "PYTHONPATH": "",  # empty is unset for Python: nothing but the venv's site-packages
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env = {**os.environ, **extra}
    env.pop("VIRTUAL_ENV", None)

    seen = probe(bin_dir / "python", tmp_path, env)
    inside = venv.resolve()
    for key in ("package", "celeryconfig", "sql"):
        assert Path(seen[key]).resolve().is_relative_to(inside), (key, seen[key])
    assert seen["query"] == sqlfiles.query("catalog_tables")

    client = redis.Redis.from_url(url)
    client.flushdb()
    pool = WorkerPool(servers, prefix="wheel", extra_env=extra)
    pool.argv = [str(bin_dir / "celery"), "-A", "pagila_tasks", "worker"]
    pool.cwd = tmp_path
    try:
        pool.start(2)
        proc = completed([bin_dir / "pagila-submit", "run", "--json"], tmp_path, env)
        assert proc.returncode == 0, (proc.stdout, proc.stderr, pool.log_tail())
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["kind"] == "replicate" and out["state"] == "succeeded", out
        assert {u["worker"].split("@", 1)[0] for u in out["units"].values()} <= {
            "wheel1",
            "wheel2",
        }
        assert scalar(servers.source_dsn, "SELECT count(*) FROM public.rental") == 16044
        assert scalar(servers.target_dsn, "SELECT count(*) FROM public.rental") == 16044
    finally:
        pool.stop()
        client.flushdb()
        client.close()
