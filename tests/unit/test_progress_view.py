"""Byte progress and its ETA computed from a run record, the rate option's parsing, and the
progress view drawn on a terminal and printed without one."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from pagila_tasks.base.errors import ConfigError
from pagila_tasks.cli import render
from pagila_tasks.config import parse_rate
from pagila_tasks.run.model import ReplicationPlan, Run, RunState, UnitProgress
from pagila_tasks.run.plan import Table as CatalogTable
from pagila_tasks.run.plan import Unit, expected_bytes


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


RENTAL = [Unit("public", "rental", ("rental_id",), i, 2, "rental_id") for i in range(2)]
FILM = Unit("public", "film", ("film_id",))


def _run(units: dict[str, UnitProgress], copying_at: float = 100.0, rate: int | None = None) -> Run:
    plan = ReplicationPlan(
        schemas=("public",),
        swap=True,
        targets={"public": "stage"},
        units=(*RENTAL, FILM),
        table_keys=(),
        expected={"public.rental#1of2": 1000, "public.rental#2of2": 1000, "public.film": 500},
        max_rate=rate,
    )
    return Run("r1", "replicate", RunState.RUNNING, units=units, plan=plan, copying_at=copying_at)


def test_progress_counts_reads_and_writes_and_gives_an_eta() -> None:
    run = _run(
        {
            "public.rental#1of2": UnitProgress("done", bytes=1200, updated_at=_at(108)),
            "public.rental#2of2": UnitProgress("running", read=600, written=0, updated_at=_at(110)),
            "public.film": UnitProgress("queued"),
        }
    )
    p = run.progress(110.0)
    assert p is not None
    # done: 1200 (real size); running: size max(1000, 600), nothing written yet; queued: 500
    assert p.expected_bytes == 1200 + 1000 + 500
    assert p.done_bytes == 1200
    assert p.rate == pytest.approx(120.0)
    assert p.eta_seconds == pytest.approx((2700 - 1200) / 120.0)
    assert (p.units_done, p.units) == (1, 3)
    later = run.progress(112.0)  # the counts are as of 110: two seconds of the ETA went by
    assert later is not None and later.rate == pytest.approx(120.0)
    assert later.eta_seconds == pytest.approx((2700 - 1200) / 120.0 - 2)


def test_a_unit_being_written_has_its_real_size_and_reused_units_are_not_counted() -> None:
    run = _run(
        {
            "public.rental#1of2": UnitProgress("reused", rows=10),
            "public.rental#2of2": UnitProgress("running", read=800, written=400),
            "public.film": UnitProgress("done", bytes=400),
        }
    )
    p = run.progress(104.0)
    assert p is not None
    assert p.expected_bytes == 800 + 400  # the read ended at 800: its size is known now
    assert p.done_bytes == 400 + 400  # bytes count once written to the target
    assert p.units == 2


def test_no_eta_before_a_byte_moved_and_none_left_when_every_unit_is_done() -> None:
    assert _run({}, copying_at=0.0).progress(5.0).eta_seconds is None  # type: ignore[union-attr]
    done = {u.name: UnitProgress("done", bytes=10, updated_at=_at(150)) for u in (*RENTAL, FILM)}
    assert _run(done).progress(200.0).eta_seconds == 0.0  # type: ignore[union-attr]


def test_expected_bytes_prefer_the_last_runs_and_else_share_the_catalog_size() -> None:
    table = CatalogTable("public", "rental", 100, 10_000, ("rental_id",), "rental_id")
    got = expected_bytes(RENTAL, [table], {"public.rental#1of2": 4321})
    assert got["public.rental#1of2"] == 4321
    assert 0 < got["public.rental#2of2"] <= 5000


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("20MB/s", 20_000_000),
        ("500kB/s", 500_000),
        ("1.5GiB/s", int(1.5 * 1024**3)),
        ("100000", 100_000),
        ("2 MiB", 2 * 1024**2),
    ],
)
def test_rates_parse(raw: str, rate: int) -> None:
    assert parse_rate(raw) == rate


@pytest.mark.parametrize("raw", ["", "fast", "20MB/h", "-1MB/s", "1kB/s"])
def test_bad_rates_are_refused_naming_the_option(raw: str) -> None:
    with pytest.raises(ConfigError, match="--max-rate"):
        parse_rate(raw)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_view_draws_a_bar_above_the_units_and_plain_output_prints_lines() -> None:
    run = _run(
        {
            "public.rental#1of2": UnitProgress("done", bytes=1200, rows=5, worker="w1"),
            "public.rental#2of2": UnitProgress("running", read=600, written=300, worker="w2"),
        },
        copying_at=1.0,
        rate=20_000_000,
    )
    tty = _Tty()
    view = render.LiveView(tty)
    view.update(run)
    view.close()
    drawn = tty.getvalue()
    assert "━" in drawn and "units 1/3" in drawn and "cap 20.0" in drawn
    assert drawn.index("cap 20.0") < drawn.index("public.rental#2of2")

    plain = io.StringIO()
    view = render.LiveView(plain)
    view.update(run)
    lines = plain.getvalue().splitlines()
    assert any(ln.startswith("progress: ") and "units 1/3" in ln for ln in lines), lines
    assert "\x1b[" not in plain.getvalue()
