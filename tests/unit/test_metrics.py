"""The metrics textfile (issue #22): the replication ledger's summary as Prometheus text, one
series per metric and target, and the file replaced atomically."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pagila_tasks.config import from_env
from pagila_tasks.run import metrics

TARGET = "db.example:5432/pagila"
NOW = 1_750_000_000.0


def _samples(ledger: metrics.Ledger) -> dict[str, tuple[dict[str, str], float]]:
    text = metrics.exposition(ledger, TARGET, NOW).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.name not in found, f"{sample.name} twice"
            found[sample.name] = (sample.labels, sample.value)
    return found


def _values(ledger: metrics.Ledger) -> dict[str, float]:
    return {name: value for name, (_, value) in _samples(ledger).items()}


def _ledger(**last: object) -> metrics.Ledger:
    run = {"finished_at": NOW - 600, "duration_s": 42.5, "succeeded": True, "rows": 9, "bytes": 99}
    return metrics.Ledger(7, 2, NOW - 3600, metrics.LastRun(**{**run, **last}))  # type: ignore[arg-type]


def test_the_last_success_and_its_age() -> None:
    """The last success's end as a timestamp, and its age computed at writing time."""
    values = _values(_ledger())
    assert values["pagila_replication_last_success_timestamp_seconds"] == NOW - 3600
    assert values["pagila_replication_last_success_age_seconds"] == 3600


def test_the_last_run_and_the_counts() -> None:
    """The last run's duration, bytes, rows and success; the ledger's runs and failed runs."""
    values = _values(_ledger(succeeded=False))
    assert values["pagila_replication_last_run_duration_seconds"] == 42.5
    assert values["pagila_replication_last_run_bytes"] == 99
    assert values["pagila_replication_last_run_rows"] == 9
    assert values["pagila_replication_last_run_success"] == 0
    assert values["pagila_replication_runs_total"] == 7
    assert values["pagila_replication_runs_failed_total"] == 2
    assert _values(_ledger())["pagila_replication_last_run_success"] == 1


def test_one_label_the_target_and_no_run_id() -> None:
    """Every series is labelled by the target alone (no run id: bounded cardinality)."""
    text = metrics.exposition(_ledger(), TARGET, NOW).decode()
    assert "run_id" not in text and "replicate-" not in text
    samples = _samples(_ledger())
    assert len(samples) == 8
    assert {tuple(labels.items()) for labels, _ in samples.values()} == {(("target", TARGET),)}
    assert "# TYPE pagila_replication_runs_failed_total counter" in text
    assert "# TYPE pagila_replication_last_success_timestamp_seconds gauge" in text


def test_a_ledger_without_a_success() -> None:
    """No success ever: the timestamp is 0 (so ``time() - it`` alerts), no last run when the
    ledger is empty."""
    values = _values(metrics.Ledger())
    assert values["pagila_replication_last_success_timestamp_seconds"] == 0
    assert values["pagila_replication_last_success_age_seconds"] == NOW
    assert values["pagila_replication_runs_total"] == 0
    assert not any("last_run" in name for name in values)


def test_the_ledger_row_as_read() -> None:
    """The summary row the target returns (timestamptz as aware datetimes) becomes Unix
    seconds; a missing last run stays None."""
    ended = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    row = {
        "runs": 3,
        "failed": 1,
        "last_success_at": ended - timedelta(hours=1),
        "last_finished_at": ended,
        "last_duration_s": 12.0,
        "last_succeeded": False,
        "last_rows": 5,
        "last_bytes": 50,
    }
    ledger = metrics.Ledger.from_row(row)
    assert ledger.last_success_at == ended.timestamp() - 3600
    assert ledger.last_run == metrics.LastRun(ended.timestamp(), 12.0, False, 5, 50)
    assert metrics.Ledger.from_row({"runs": 0, "failed": 0}) == metrics.Ledger()


def test_the_file_is_replaced_whole_and_readable(tmp_path: Path) -> None:
    """The textfile is written beside itself and renamed over the old one, mode 0644 whatever
    the umask, with no temporary file left."""
    path = tmp_path / "pagila.prom"
    path.write_text("old\n")
    old_umask = os.umask(0o077)
    try:
        metrics.write(path, b"new\n")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["pagila.prom"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails removes its temporary file and keeps the old one."""
    path = tmp_path / "pagila.prom"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        metrics.write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pagila.prom"]


def _ctx(tmp_path: Path, kind: str) -> SimpleNamespace:
    s = from_env({"PAGILA_METRICS_FILE": str(tmp_path / "pagila.prom")})
    return SimpleNamespace(s=s, record=SimpleNamespace(get=lambda _: SimpleNamespace(kind=kind)))


def test_a_worker_that_cannot_write_the_metrics_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A replication's end with an unreadable target logs a warning and raises nothing."""

    def unreachable(*_: object) -> dict[str, object]:
        raise OSError("target down")

    monkeypatch.setattr(metrics.support, "replication_summary", unreachable)
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        metrics.after_end(_ctx(tmp_path, "replicate"), "replicate-x")  # type: ignore[arg-type]
    assert "metrics file" in caplog.text and "target down" in caplog.text
    assert not (tmp_path / "pagila.prom").exists()


def test_only_a_replication_rewrites_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load's end leaves the file alone; a replication's writes it from the ledger."""
    row = {"runs": 1, "failed": 0, "last_success_at": NOW}
    monkeypatch.setattr(metrics.support, "replication_summary", lambda *_: row)
    metrics.after_end(_ctx(tmp_path, "load"), "load-x")  # type: ignore[arg-type]
    assert not (tmp_path / "pagila.prom").exists()
    metrics.after_end(_ctx(tmp_path, "replicate"), "replicate-x")  # type: ignore[arg-type]
    text = (tmp_path / "pagila.prom").read_text()
    assert 'pagila_replication_last_success_timestamp_seconds{target="localhost:5444/pagila"}' in (
        text
    )
