"""The package as it is found from a checkout: a bare source tree and the editable install
(the built wheel is tested in tests/e2e/test_wheel.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pagila_tasks.pg import sqlfiles
from tests.support import PROBE, ROOT, probe, run


def test_source_tree_reads_sql_beside_the_package() -> None:
    """A checkout on sys.path with nothing installed (no site-packages) reads the top-level sql/."""
    # -S: no site-packages, so no editable finder either; -E: no PYTHONPATH. Only the
    # standard library is importable beside the checkout, so celeryconfig is not probed.
    out = json.loads(
        run([sys.executable, "-S", "-E", "-c", PROBE], ROOT, dict(os.environ)).splitlines()[-1]
    )
    assert Path(out["package"]).parent == ROOT / "pagila_tasks"
    assert out["sql"] == str(ROOT / "sql")
    assert out["query"] == sqlfiles.query("catalog_tables")


def test_editable_install_maps_the_sql_package_to_the_top_level_folder(tmp_path: Path) -> None:
    """`pip install -e .` (what make does) serves pagila_tasks.sql from the checkout's sql/."""
    env = {**os.environ, "PYTHONPATH": ""}
    found = subprocess.run(
        [sys.executable, "-c", "import pagila_tasks"], cwd=tmp_path, env=env, check=False
    )
    if found.returncode != 0:
        pytest.skip("pagila-tasks is not installed in this interpreter (make test installs it)")
    out = probe(sys.executable, tmp_path, env)
    assert Path(out["package"]).parent == ROOT / "pagila_tasks"
    assert Path(out["celeryconfig"]) == ROOT / "celeryconfig.py"
    assert out["sql"] == str(ROOT / "sql")
    assert out["query"] == sqlfiles.query("catalog_tables")
