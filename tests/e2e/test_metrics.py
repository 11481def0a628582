"""The metrics textfile (issue #22) from a real ledger: ``pagila-submit metrics`` and the
worker's ``PAGILA_METRICS_FILE`` show the last success's age after a real replication."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pagila_tasks.config import where
from tests.support import query, submit, wait_for

pytestmark = pytest.mark.e2e

LAST_SUCCESS = "pagila_replication_last_success_timestamp_seconds"


def _values(text: str, target: str) -> dict[str, float]:
    """Every sample by name; each must be labelled by the target alone."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels == {"target": target}, sample
            found[sample.name] = sample.value
    return found


def test_the_metrics_show_the_last_success_and_its_age(servers, isolated, tmp_path: Path) -> None:
    """Before any run the timestamp is 0; after one, the command's file and the worker's both
    hold the ledger's last success, a few seconds old, and the last run's rows and bytes."""
    target = where(servers.target_dsn)
    worker_file = tmp_path / "worker.prom"
    iso = isolated({"PAGILA_METRICS_FILE": str(worker_file)})
    iso.pool(2)

    proc = iso.submit("metrics")
    assert proc.returncode == 0, proc.stderr
    before = _values(proc.stdout, target)
    assert before[LAST_SUCCESS] == 0 and before["pagila_replication_runs_total"] == 0

    proc = iso.submit("run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((ended, rows, size),) = query(
        servers.target_dsn,
        "SELECT extract(epoch FROM finished_at)::float8, rows, bytes "
        "FROM pagila_support.replication_audit WHERE succeeded",
    )

    cli_file = tmp_path / "cli.prom"
    proc = iso.submit("metrics", "--textfile", str(cli_file))
    assert proc.returncode == 0 and not proc.stdout, proc.stdout + proc.stderr
    assert stat.S_IMODE(cli_file.stat().st_mode) == 0o644
    values = _values(cli_file.read_text(), target)
    assert values[LAST_SUCCESS] == pytest.approx(ended, abs=1e-3)
    assert 0 <= values["pagila_replication_last_success_age_seconds"] < 120
    assert 0 <= time.time() - values[LAST_SUCCESS] < 120
    assert values["pagila_replication_last_run_success"] == 1
    assert values["pagila_replication_last_run_rows"] == rows > 0
    assert values["pagila_replication_last_run_bytes"] == size > 0
    assert values["pagila_replication_last_run_duration_seconds"] > 0
    assert values["pagila_replication_runs_total"] == 1
    assert values["pagila_replication_runs_failed_total"] == 0

    # The worker that ended the run rewrote its file just after the run was reported ended.
    wait_for(worker_file.exists, 30, f"the worker's {worker_file}")
    worker = _values(worker_file.read_text(), target)
    assert worker[LAST_SUCCESS] == values[LAST_SUCCESS]
    assert worker["pagila_replication_runs_total"] == 1


def test_an_unreadable_target_leaves_the_file_alone(servers, tmp_path: Path) -> None:
    """A target that cannot be read: exit 1, one line without the password, the old file kept
    (its timestamp goes on ageing, so the alert still fires)."""
    path = tmp_path / "pagila.prom"
    path.write_text("old\n")
    env = {"PAGILA_TARGET_DSN": "postgresql://u:sekrit-pw@127.0.0.1:1/nowhere"}
    proc = submit("metrics", "--textfile", str(path), env=env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sekrit-pw" not in proc.stderr and proc.stderr.startswith("pagila-submit: ")
    assert path.read_text() == "old\n"
