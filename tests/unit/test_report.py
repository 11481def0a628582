"""The run report built from a hand-made run record: lanes, bars, hover text, the slowest units,
the ledger chart, the plain text, and a page that needs no network."""

from __future__ import annotations

import html
import json
import re

import plotly.graph_objects as go

from pagila_tasks.cli import report
from pagila_tasks.cli.render import started_line
from pagila_tasks.run.model import Run, RunState, Step, UnitProgress

T = 1_700_000_000.0  # 2023-11-14T22:13:20+00:00
SEEN = {"source": "src:5432/pagila", "target": "tgt:5433/pagila", "schemas": ["public"]}
CONTROL, W1, W2 = ("w1@h", 10), ("w1@h", 11), ("w2@h", 22)


def _unit(state: str, table: str, where: tuple[str, int], start: float, end: float | None, **kw):
    return UnitProgress(
        state, table, worker=where[0], pid=where[1], started_at=T + start,
        ended_at=T + end if end is not None else None, **kw,
    )  # fmt: skip


def _run(**changes: object) -> Run:
    units = {
        "public.actor": _unit("done", "public.actor", W1, 1.0, 1.5, rows=200, bytes=8_000_000,
                              seconds=0.5),
        "public.rental#1of2": _unit("done", "public.rental", W2, 1.0, 3.0, rows=8000,
                                    bytes=4_000_000, seconds=2.0),
        "public.film": _unit("failed", "public.film", W2, 3.0, None,
                             updated_at="2023-11-14T22:13:24+00:00", error="boom"),
        "public.rental#2of2": UnitProgress("reused", "public.rental", rows=8044,
                                           origin="replicate-old"),
        "public.staff": UnitProgress("queued", "public.staff"),
    }  # fmt: skip
    steps = (
        Step("prepare", "export snapshot", T, *CONTROL),
        Step("prepare", "4 units to copy: --full copies every table", T + 0.8, *CONTROL),
        Step("finish", "post-data (indexes two at a time, the rest as live)", T + 4.5, *W2),
        Step("finish", "switch", T + 7, *W2),
        Step("switch", "switched in 5.0 ms (locks: True)", T + 7.5, *W2),
        Step("finish", "succeeded, 3 tables verified", T + 9, *W2),
    )
    fields: dict[str, object] = {
        "run_id": "replicate-1",
        "kind": "replicate",
        "state": RunState.SUCCEEDED,
        "started_at": "2023-11-14T22:13:20+00:00",
        "finished_at": "2023-11-14T22:13:30+00:00",
        "seen": SEEN,
        "units": units,
        "steps": steps,
    }
    return Run(**(fields | changes))  # type: ignore[arg-type]


def _points(fig: go.Figure) -> dict[str, tuple[str, float, float, str]]:
    """Every bar of a timeline: id -> (lane, start, length, trace name)."""
    out = {}
    for trace in fig.data:
        for bar_id, lane, base, x in zip(
            trace.customdata, trace.y, trace.base, trace.x, strict=True
        ):
            assert bar_id not in out, bar_id
            out[bar_id] = (lane, base, x, trace.name)
    return out


def test_one_lane_per_worker_process_and_one_bar_per_started_unit_or_step() -> None:
    """Lanes are worker+pid in order of first use; reused and queued units have no bar."""
    run = _run()
    bars = report.bars(run)
    fig = report.timeline(run, bars)
    assert report.lanes(bars) == ["w1@h pid 10", "w1@h pid 11", "w2@h pid 22"]
    assert list(fig.layout.yaxis.categoryarray) == ["w2@h pid 22", "w1@h pid 11", "w1@h pid 10"]
    points = _points(fig)
    copies = {"public.actor", "public.rental#1of2", "public.film"}
    assert set(points) == copies | {f"step {i}" for i in range(1, 7)}
    assert points["public.actor"] == ("w1@h pid 11", 1.0, 0.5, "copy: done")
    assert points["public.film"] == ("w2@h pid 22", 3.0, 1.0, "copy: failed")  # to updated_at
    assert {t.name for t in fig.data} == {"copy: done", "copy: failed", "step: done"}
    assert all(isinstance(t, go.Bar) and t.orientation == "h" for t in fig.data)
    assert fig.layout.barmode == "overlay"


def test_a_step_ends_where_the_next_step_of_its_task_begins() -> None:
    """prepare's last step ends where it is said (the copies come next); the others at the
    next step; the last one at the run's end, never before itself."""
    by_label = {b.label: b for b in report.step_bars(_run())}
    assert by_label["prepare: export snapshot"].end == T + 0.8
    last_prepare = by_label["prepare: 4 units to copy: --full copies every table"]
    assert last_prepare.end == last_prepare.start
    assert by_label["finish: switch"].end == T + 7.5
    assert by_label["switch: switched in 5.0 ms (locks: True)"].end == T + 9
    assert by_label["finish: succeeded, 3 tables verified"].end == T + 10  # finished_at
    early = _run(finished_at="2023-11-14T22:13:25+00:00")
    assert report.step_bars(early)[-1].end == T + 9
    failed = _run(steps=(*_run().steps[:3], Step("fail", "failed (target unchanged)", T + 6)))
    assert report.step_bars(failed)[-1].outcome == "failed"
    assert report.step_bars(failed)[-1].lane == "? pid ?"


def test_hover_text_gives_table_rows_bytes_seconds_and_rate() -> None:
    """A copy's hover names its table, rows, bytes, seconds and MB/s; a step's its text."""
    fig = report.timeline(_run(), report.bars(_run()))
    hovers = {
        bar_id: hover
        for trace in fig.data
        for bar_id, hover in zip(trace.customdata, trace.hovertext, strict=True)
    }
    actor = hovers["public.actor"]
    for bit in ("public.actor", "200 rows", "7.6 MiB", "0.500 s", "16.00 MB/s", "w1@h pid 11"):
        assert bit in actor, actor
    assert "post-data (indexes two at a time, the rest as live)" in hovers["step 3"]


def test_the_slowest_units_come_first_and_reused_units_are_listed() -> None:
    """The table: longest bars first, then the units this run reused (no time, no bar)."""
    rows = report.slowest(_run(), report.bars(_run()), n=3)
    assert [r[0] for r in rows] == [
        "finish: post-data (indexes two at a time, the rest as live)",
        "public.rental#1of2",
        "switch: switched in 5.0 ms (locks: True)",
        "public.rental#2of2",
    ]
    assert rows[1][1:] == ["w2@h pid 22", "done", "8,000", "3.8 MiB", "2.000", "2.00"]
    assert rows[-1][2] == "reused from replicate-old"


def test_the_history_chart_is_oldest_first_with_failures_in_red() -> None:
    """Ledger rows come newest first; the chart reads left to right, this run outlined."""
    rows = [
        {"run_id": "r3", "started_at": "2024-01-01T00:02:00+00:00",
         "finished_at": "2024-01-01T00:02:30+00:00", "succeeded": True, "bytes": 5_000_000},
        {"run_id": "r2", "started_at": "2024-01-01T00:01:00+00:00",
         "finished_at": "2024-01-01T00:01:10+00:00", "succeeded": False, "bytes": None},
    ]  # fmt: skip
    fig = report.history_figure(rows, "r3")
    assert fig is not None
    seconds, mb = fig.data
    assert list(seconds.x) == ["r2", "r3"] and list(seconds.y) == [10.0, 30.0]
    assert list(mb.y) == [None, 5.0]
    assert list(seconds.marker.color) == [report.COLOURS["failed"], report.COLOURS["done"]]
    assert list(seconds.marker.line.width) == [0, 3]
    assert report.history_figure([{"error": "no route to host"}], "r3") is None


def test_the_text_report_has_the_first_line_lanes_and_slowest_units() -> None:
    """Without --html: the run's first line, one line per worker process, the slowest units."""
    run = _run()
    out = report.text(run)
    lines = out.splitlines()
    assert lines[0] == started_line("replicate-1", "replicate", SEEN)
    assert lines[1].startswith("succeeded: started 2023-11-14T22:13:20+00:00")
    assert "10.0 s; 2 of 5 units copied" in lines[1]
    assert re.search(r"^w1@h pid 10\s+0\s+2\s+0\.80\s+0\s+0 B$", out, re.M), out
    assert re.search(r"^w2@h pid 22\s+2\s+4\s+", out, re.M), out
    assert "slowest units:" in out and "reused from replicate-old" in out


def test_the_page_is_self_contained_and_carries_its_data() -> None:
    """One page, plotly inlined (no script from anywhere), names escaped, and a JSON element
    listing the lanes and bars it draws."""
    hostile = "public.</script><b>x"
    units = _run().units | {hostile: _unit("done", hostile, W1, 2.0, 2.5, rows=1, bytes=1)}
    run = _run(units=units)
    history = [
        {"run_id": "replicate-1", "started_at": run.started_at, "finished_at": run.finished_at}
    ]
    page = report.page(run, history)
    assert page.startswith("<!DOCTYPE html>") and page.count("</html>") == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert "plotly.js v" in page and len(page) > 1_000_000  # plotly.js itself, inlined
    assert '"modeBarButtonsToRemove": ["sendChartToCloud"' in page  # no upload button
    assert page.count('id="timeline"') == 1 and page.count('id="history"') == 1
    assert "</script><b>x" not in page
    assert html.escape(started_line(run.run_id, run.kind, run.seen)) in page
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found
    data = json.loads(found.group(1))
    assert data["run_id"] == "replicate-1" and data["state"] == "succeeded"
    assert data["lanes"] == ["w1@h pid 10", "w1@h pid 11", "w2@h pid 22"]
    assert {b["id"] for b in data["bars"] if b["kind"] == "copy"} == {
        "public.actor", "public.rental#1of2", "public.film", hostile,
    }  # fmt: skip
    assert sum(b["kind"] == "step" for b in data["bars"]) == 6
    assert "no ledger rows: no route" in report.page(run, [{"error": "no route"}])
