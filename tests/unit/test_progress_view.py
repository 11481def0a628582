"""Byte progress and its ETA computed from a run record, the rate option's parsing, and the
progress view drawn on a terminal and printed without one."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from pagila_tasks.base.errors import ConfigError
from pagila_tasks.cli import render
from pagila_tasks.config import parse_rate
from pagila_tasks.run import eta
from pagila_tasks.run.model import (
    ReplicateOptions,
    ReplicationPlan,
    Run,
    RunState,
    UnitProgress,
)
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
    p = eta.progress(run, 110.0)
    assert p is not None
    # done: 1200 (real size); running: size max(1000, 600), read and write weighed half and
    # half (no unit says yet how long its read took), so 300; queued: 500 expected
    assert p.expected_bytes == 1200 + 1000 + 500
    assert p.done_bytes == 1200 + 300
    assert p.rate == pytest.approx(150.0)
    assert p.eta_seconds == pytest.approx((2700 - 1500) / 150.0)
    assert (p.units_done, p.units) == (1, 3)
    later = eta.progress(run, 112.0)  # the counts are as of 110: two seconds of the ETA went by
    assert later is not None and later.rate == pytest.approx(150.0)
    assert later.eta_seconds == pytest.approx((2700 - 1500) / 150.0 - 2)


def test_a_unit_being_written_has_its_real_size_and_reused_units_are_not_counted() -> None:
    run = _run(
        {
            "public.rental#1of2": UnitProgress("reused", rows=10),
            "public.rental#2of2": UnitProgress("running", read=800, written=400),
            "public.film": UnitProgress("done", bytes=400, seconds=1.0, read_seconds=0.25),
        }
    )
    p = eta.progress(run, 104.0)
    assert p is not None
    assert p.expected_bytes == 800 + 400  # the read ended at 800: its size is known now
    # film's read took a quarter of its time: the running unit's read weighs a quarter
    assert p.done_bytes == 400 + 0.25 * 800 + 0.75 * 400
    assert p.units == 2


def test_no_eta_before_a_byte_moved_and_none_left_when_every_unit_is_done() -> None:
    assert eta.progress(_run({}, copying_at=0.0), 5.0).eta_seconds is None  # type: ignore[union-attr]
    done = {u.name: UnitProgress("done", bytes=10, updated_at=_at(150)) for u in (*RENTAL, FILM)}
    assert eta.progress(_run(done), 200.0).eta_seconds == 0.0  # type: ignore[union-attr]


def test_expected_bytes_prefer_the_last_runs_and_else_share_the_catalog_size() -> None:
    table = CatalogTable("public", "rental", 100, 10_000, ("rental_id",), "rental_id")
    got = expected_bytes(RENTAL, [table], {"public.rental#1of2": 4321})
    assert got["public.rental#1of2"] == 4321
    assert 0 < got["public.rental#2of2"] <= 5000


def test_the_cost_per_unit_is_fitted_so_small_units_left_are_not_little_time_left() -> None:
    # one process: 1 s per MB plus 0.5 s a unit, measured from the end of its previous unit
    finished = {
        f"u{i}": UnitProgress(
            "done", bytes=mb * 1_000_000, started_at=t0, ended_at=t0 + mb + 0.5, worker="w1", pid=1
        )
        for i, (mb, t0) in enumerate([(1, 0.0), (2, 1.5), (4, 4.0), (1, 8.5), (8, 10.0)])
    }
    costs = eta.worker_costs(finished.values())
    assert [round(s, 6) for _, s in costs] == [1.5, 2.5, 4.5, 1.5, 8.5]
    per_byte, overhead = eta.fit(costs)  # type: ignore[misc]
    assert per_byte == pytest.approx(1e-6) and overhead == pytest.approx(0.5)
    assert eta.fit(costs[:4]) is None  # too few to fit
    assert eta.fit([(1e6, 1.5)] * 6) is None  # one size: per byte and per unit cannot be told apart


def _plain_plan(n: int, unit_overhead: float = 0.0) -> tuple[list[Unit], ReplicationPlan]:
    """``n`` whole-table units of 1000 expected bytes each, and their plan."""
    units = [Unit("public", f"t{i}", ("id",)) for i in range(n)]
    plan = ReplicationPlan(
        schemas=("public",),
        swap=True,
        targets={"public": "stage"},
        units=tuple(units),
        table_keys=(),
        expected={u.name: 1000 for u in units},
        unit_overhead=unit_overhead,
    )
    return units, plan


def test_the_eta_counts_each_unit_left_its_overhead() -> None:
    units, plan = _plain_plan(8)
    timeline = {  # w1: 1 ms/B + 0.5 s a unit
        units[i].name: UnitProgress(
            "done", bytes=b, started_at=t0, ended_at=t1, worker="w1", pid=1, updated_at=_at(t1)
        )
        for i, (b, t0, t1) in enumerate(
            [(1000, 0, 1.5), (2000, 1.5, 4), (4000, 4, 8.5), (500, 8.5, 9.5), (1000, 9.5, 11)]
        )
    }
    run = Run("r1", "replicate", RunState.RUNNING, units=timeline, plan=plan, copying_at=0.001)
    p = eta.progress(run, 11)
    # three units of 1000 B left, none started, one process: 3 * (1 s + 0.5 s)
    assert p is not None and p.eta_seconds == pytest.approx(4.5, rel=1e-3)
    later = eta.progress(run, 12)  # the counts are a second old
    assert later is not None and later.eta_seconds == pytest.approx(3.5, rel=1e-3)


def test_before_a_fit_each_unit_not_started_adds_the_last_runs_per_unit_cost() -> None:
    units, plan = _plain_plan(4, unit_overhead=0.5)
    copied = {
        units[0].name: UnitProgress(
            "done", bytes=1000, started_at=0, ended_at=1, worker="w1", pid=1, updated_at=_at(1)
        ),
        units[1].name: UnitProgress(
            "running", read=1000, written=500, started_at=0, worker="w2", pid=2, updated_at=_at(1)
        ),
    }
    run = Run("r1", "replicate", RunState.RUNNING, units=copied, plan=plan, copying_at=1e-9)
    p = eta.progress(run, 1)
    assert p is not None and p.done_bytes == 1000 + 750
    # 2250 bytes left at 1750 B/s, and two units not started at 0.5 s each over two processes
    assert p.eta_seconds == pytest.approx(2250 / 1750 + 0.5, rel=1e-3)


def test_plans_and_options_keep_their_own_fields_through_json() -> None:
    plan = ReplicationPlan(
        schemas=("public",),
        swap=True,
        targets={"public": "stage"},
        units=(FILM,),
        table_keys=(),
        expected={FILM.name: 10},
        max_rate=64_000,
        unit_overhead=0.25,
    )
    assert ReplicationPlan.from_json(plan.as_json()) == plan
    options = ReplicateOptions(full=True, max_rate=64_000)
    assert options.as_kwargs()["max_rate"] == 64_000
    assert ReplicateOptions(**options.as_kwargs()) == options


def test_the_per_unit_cost_prior_is_the_intercept_of_the_last_runs_fit() -> None:
    assert eta.unit_overhead(None) == 0.0
    t, units = 0.0, {}
    for i, b in enumerate([10**6, 2 * 10**6, 4 * 10**6, 10**6, 8 * 10**6]):
        s = b / 10**6 + 0.05  # 1 s per MB and 0.05 s a unit
        units[f"u{i}"] = UnitProgress("done", bytes=b, started_at=t, ended_at=t + s, pid=1)
        t += s
    last = Run("r0", "replicate", RunState.SUCCEEDED, units=units)
    assert eta.unit_overhead(last) == pytest.approx(0.05)


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
