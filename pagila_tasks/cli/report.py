"""``pagila-submit report``: one run as a self-contained HTML page or as plain text.

The page holds the run's first line, a timeline (one lane per worker process, one bar per unit:
prepare's steps, each copy, post-data, verification, the switch), the slowest units and the
ledger's last runs; plotly draws it and its JavaScript is inlined, so the page needs no network.
Pure: it reads a :class:`Run` and ledger rows, never Redis or a server.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pagila_tasks.base.names import printable
from pagila_tasks.cli.render import human_bytes, started_line, table
from pagila_tasks.run.model import Run, Step

SLOWEST = 12
"""Rows of the slowest-units table."""
HISTORY_RUNS = 30
"""Runs of the ledger the history chart shows."""
COLOURS = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "retrying": "#ef6c00",
    "error": "#ef6c00",
    "running": "#1565c0",
    "queued": "#9e9e9e",
}
OTHER_COLOUR = "#6d4c41"
EDGE = "rgba(0, 0, 0, 0.35)"
"""Bars' outline: bars side by side stay apart, an instant's step shows as a hairline."""
TASKS = {"prepare": "prepare", "finish": "finish", "switch": "finish", "fail": "fail"}
"""The control task each step phase belongs to: a step ends where the next step of its task
begins (prepare's last one ends where it is said: the copies come before the next task)."""


@dataclass(frozen=True)
class Bar:
    """One bar of the timeline: a copy (``kind`` "copy") or a control step ("step")."""

    id: str
    kind: str
    label: str
    lane: str
    outcome: str
    start: float
    end: float
    table: str | None = None
    rows: int | None = None
    bytes: int | None = None
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float | None:
        """Megabytes (10^6) of COPY stream a second; None without bytes or time."""
        return self.bytes / self.seconds / 1e6 if self.bytes and self.seconds > 0 else None


def lane_of(worker: str | None, pid: int | None) -> str:
    """A worker process's lane: its node name and pid."""
    return f"{worker or '?'} pid {pid if pid is not None else '?'}"


def epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO string or datetime; None when missing or unreadable."""
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def unit_bars(run: Run) -> list[Bar]:
    """One bar per unit that started (a reused or never-started unit has none)."""
    out = []
    for name, u in run.units.items():
        if u.started_at is None:
            continue
        end = max(u.started_at, u.ended_at or epoch(u.updated_at) or u.started_at)
        out.append(
            Bar(
                id=name,
                kind="copy",
                label=name,
                lane=lane_of(u.worker, u.pid),
                outcome=u.state,
                start=u.started_at,
                end=end,
                table=u.table,
                rows=u.rows,
                bytes=u.bytes,
                seconds=float(u.seconds or 0) or end - u.started_at,
            )
        )
    return out


def _step_end(steps: list[Step], i: int, finished: float | None) -> float:
    step = steps[i]
    if i + 1 == len(steps):
        return max(step.at, finished or step.at)
    following = steps[i + 1]
    if step.phase == "prepare" and TASKS.get(following.phase) != "prepare":
        return step.at
    return max(step.at, following.at)


def step_bars(run: Run) -> list[Bar]:
    """One bar per control step, from its start to the next step's (see :data:`TASKS`)."""
    steps = sorted(run.steps, key=lambda s: s.at)
    finished = epoch(run.finished_at)
    out = []
    for i, step in enumerate(steps):
        end = _step_end(steps, i, finished)
        out.append(
            Bar(
                id=f"step {i + 1}",
                kind="step",
                label=f"{step.phase}: {step.text}",
                lane=lane_of(step.worker, step.pid),
                outcome="failed" if step.phase == "fail" else "done",
                start=step.at,
                end=end,
                seconds=end - step.at,
            )
        )
    return out


def bars(run: Run) -> list[Bar]:
    """Every bar of the run's timeline, by start."""
    return sorted([*step_bars(run), *unit_bars(run)], key=lambda b: (b.start, b.id))


def lanes(all_bars: list[Bar]) -> list[str]:
    """The worker processes, in the order each first began something."""
    return list(dict.fromkeys(b.lane for b in all_bars))


def _hover(b: Bar) -> str:
    lines = [f"<b>{html.escape(printable(b.label))}</b>", f"{b.outcome} on {html.escape(b.lane)}"]
    if b.table is not None:
        lines.append(f"table {html.escape(printable(b.table))}")
    if b.rows is not None:
        lines.append(f"{b.rows:,} rows")
    if b.bytes is not None:
        lines.append(human_bytes(b.bytes))
    lines.append(f"{b.seconds:.3f} s")
    if (rate := b.mb_per_s) is not None:
        lines.append(f"{rate:.2f} MB/s")
    return "<br>".join(lines)


def origin(run: Run, all_bars: list[Bar]) -> float:
    """Time zero of the timeline: the run's start, or its first bar's if earlier."""
    starts = [b.start for b in all_bars]
    started = epoch(run.started_at)
    return min([*starts, *([started] if started else [])], default=0.0)


def timeline(run: Run, all_bars: list[Bar]) -> go.Figure:
    """The timeline: one trace per kind and outcome, lanes top to bottom in order of use."""
    t0, order = origin(run, all_bars), lanes(all_bars)
    groups: dict[tuple[str, str], list[Bar]] = {}
    for b in all_bars:
        groups.setdefault((b.kind, b.outcome), []).append(b)
    fig = go.Figure()
    for (kind, outcome), group in sorted(groups.items()):
        colour = COLOURS.get(outcome, OTHER_COLOUR)
        fig.add_trace(
            go.Bar(
                name=f"{kind}: {outcome}",
                orientation="h",
                y=[b.lane for b in group],
                base=[round(b.start - t0, 3) for b in group],
                x=[round(b.end - b.start, 3) for b in group],
                customdata=[b.id for b in group],
                text=[html.escape(printable(b.label)) for b in group],
                textposition="inside",
                textangle=0,
                insidetextanchor="start",
                hovertext=[_hover(b) for b in group],
                hoverinfo="text",
                marker={
                    "color": colour,
                    "line": {"color": EDGE, "width": 1},
                    "pattern": {"shape": "/" if kind == "step" else ""},
                },
            )
        )
    fig.update_layout(
        template="plotly_white",
        barmode="overlay",
        height=160 + 48 * max(len(order), 1),
        margin={"l": 10, "r": 10, "t": 40, "b": 40},
        title="units by worker process",
        xaxis={"title": f"seconds since {run.started_at or 'the first step'}"},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": order[::-1],
            "automargin": True,
        },
        uniformtext={"minsize": 8, "mode": "hide"},
        legend={"title": {"text": "unit: outcome"}},
    )
    return fig


def _history_point(row: dict[str, Any]) -> tuple[str, float | None, float | None, bool]:
    started, finished = epoch(row.get("started_at")), epoch(row.get("finished_at"))
    seconds = finished - started if started and finished else None
    mb = float(row["bytes"]) / 1e6 if row.get("bytes") is not None else None
    return str(row["run_id"]), seconds, mb, bool(row.get("succeeded"))


def history_figure(rows: list[dict[str, Any]], run_id: str) -> go.Figure | None:
    """The ledger's runs, oldest first: duration and bytes; None when it has none."""
    points = [_history_point(r) for r in reversed(rows) if r.get("run_id")]
    if not points:
        return None
    ids = [p[0] for p in points]
    colours = [COLOURS["done"] if p[3] else COLOURS["failed"] for p in points]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    widths = [3 if i == run_id else 0 for i in ids]
    marker = {"color": colours, "line": {"color": "#000", "width": widths}}
    fig.add_trace(go.Bar(x=ids, y=[p[1] for p in points], marker=marker, name="seconds"), 1, 1)
    fig.add_trace(go.Bar(x=ids, y=[p[2] for p in points], marker=marker, name="MB"), 2, 1)
    fig.update_layout(
        template="plotly_white",
        height=460,
        showlegend=False,
        title=f"the last {len(points)} runs of the ledger (red: failed; outlined: this run)",
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    fig.update_yaxes(title_text="seconds", row=1, col=1, automargin=True)
    fig.update_yaxes(title_text="MB copied", row=2, col=1, automargin=True)
    fig.update_xaxes(type="category", tickangle=-30, automargin=True)
    return fig


def slowest(run: Run, all_bars: list[Bar], n: int = SLOWEST) -> list[list[str]]:
    """The ``n`` longest bars, then the units this run reused: one row each, as text."""
    rows = [
        [
            printable(b.label),
            b.lane,
            b.outcome,
            f"{b.rows:,}" if b.rows is not None else "-",
            human_bytes(b.bytes) if b.bytes is not None else "-",
            f"{b.seconds:.3f}",
            f"{b.mb_per_s:.2f}" if b.mb_per_s is not None else "-",
        ]
        for b in sorted(all_bars, key=lambda b: -b.seconds)[:n]
    ]
    rows += [
        [printable(name), "-", f"reused from {u.origin}", f"{u.rows or 0:,}", "-", "-", "-"]
        for name, u in sorted(run.units.items())
        if u.state == "reused"
    ]
    return rows


SLOWEST_HEADERS = ["unit", "worker process", "outcome", "rows", "bytes", "seconds", "MB/s"]


def lane_summary(all_bars: list[Bar]) -> list[list[str]]:
    """Per worker process: copies, steps, busy seconds, rows and bytes."""
    out = []
    for lane in lanes(all_bars):
        mine = [b for b in all_bars if b.lane == lane]
        copies = [b for b in mine if b.kind == "copy"]
        out.append(
            [
                lane,
                str(len(copies)),
                str(len(mine) - len(copies)),
                f"{sum(b.end - b.start for b in mine):.2f}",
                f"{sum(b.rows or 0 for b in copies):,}",
                human_bytes(sum(b.bytes or 0 for b in copies)),
            ]
        )
    return out


LANE_HEADERS = ["worker process", "copies", "steps", "busy s", "rows", "bytes"]


def headline(run: Run) -> str:
    """State, times and totals, after the first line."""
    started, finished = epoch(run.started_at), epoch(run.finished_at)
    took = f", {finished - started:.1f} s" if started and finished else ""
    done = [u for u in run.units.values() if u.state == "done"]
    total = sum(int(u.bytes or 0) for u in done)
    return (
        f"{run.state}: started {run.started_at or '-'}, finished {run.finished_at or '-'}{took}; "
        f"{len(done)} of {len(run.units)} units copied, {human_bytes(total)}"
    )


def text(run: Run) -> str:
    """The plain-text report: first line, headline, one line per lane, the slowest units."""
    all_bars = bars(run)
    return "\n".join(
        [
            started_line(run.run_id, run.kind, run.seen),
            headline(run),
            "",
            table(LANE_HEADERS, lane_summary(all_bars)),
            "",
            "slowest units:",
            table(SLOWEST_HEADERS, slowest(run, all_bars)),
        ]
    )


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data(run: Run, all_bars: list[Bar]) -> dict[str, Any]:
    """What the page draws, machine-readable (its ``report-data`` element)."""
    return {
        "run_id": run.run_id,
        "state": str(run.state),
        "lanes": lanes(all_bars),
        "bars": [asdict(b) for b in all_bars],
    }


OFFLINE = ["sendChartToCloud", "sendDataToCloud"]
"""Mode bar buttons that would upload the chart: the page works offline."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
p.first { font-family: monospace; background: #f4f4f4; padding: 0.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td:nth-child(n+4) { text-align: right; font-variant-numeric: tabular-nums; }
"""


def page(run: Run, history: list[dict[str, Any]]) -> str:
    """The whole self-contained HTML page (plotly's JavaScript inlined once)."""
    all_bars = bars(run)
    config = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": OFFLINE}
    parts = [
        timeline(run, all_bars).to_html(
            full_html=False, include_plotlyjs=True, div_id="timeline", config=config
        ),
        "<h2>slowest units</h2>",
        _html_table(SLOWEST_HEADERS, slowest(run, all_bars)),
        "<h2>history</h2>",
    ]
    past = history_figure(history[:HISTORY_RUNS], run.run_id)
    if past is not None:
        parts.append(
            past.to_html(full_html=False, include_plotlyjs=False, div_id="history", config=config)
        )
    else:
        errors = "; ".join(str(r["error"]) for r in history if r.get("error"))
        parts.append(f"<p>no ledger rows{': ' + html.escape(errors) if errors else ''}</p>")
    payload = json.dumps(data(run, all_bars)).replace("</", "<\\/")
    title = html.escape(f"run {run.run_id}")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{title}</title><style>{STYLE}</style></head><body>",
            f"<h1>{title}</h1>",
            f'<p class="first">{html.escape(started_line(run.run_id, run.kind, run.seen))}</p>',
            f"<p>{html.escape(headline(run))}</p>",
            *parts,
            f'<script type="application/json" id="report-data">{payload}</script>',
            "</body></html>",
        ]
    )
