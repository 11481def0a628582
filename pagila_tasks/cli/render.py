"""Printing runs for people: live per-unit lines while waiting, and the final summary table."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from pagila_tasks.base.names import printable
from pagila_tasks.run import eta
from pagila_tasks.run.model import Run, TableTotal, UnitProgress

if TYPE_CHECKING:  # rich is imported where a terminal is drawn: not for --json, cron or CI
    from rich.console import Group
    from rich.live import Live


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(ln.rstrip() for ln in out)


def facts(kind: str, seen: dict[str, Any] | None) -> str:
    """What the workers see for a run: servers (no password), schemas, files with sha256."""
    if not seen:
        return "no worker checks recorded"
    if kind == "load":
        files = ", ".join(f"{f['path']} (sha256 {f['sha256']})" for f in seen.get("files", []))
        return f"source {seen.get('source')}, files {printable(files)}"
    schemas = ", ".join(seen.get("schemas", []))
    keeps = seen.get("keeps")
    return (
        f"source {seen.get('source')} -> target {seen.get('target')}, schemas {schemas}, "
        f"replace: {seen.get('replace')}"
        + (f"; keeps {keeps} object(s) the target's users built" if keeps else "")
        + (
            f"; drops (--drop-dependents): {printable('; '.join(seen['drops']))}"
            if seen.get("drops")
            else ""
        )
    )


def started_line(run_id: str, kind: str, seen: dict[str, Any] | None) -> str:
    """The first line of every run: its id, and what the workers will work on."""
    return f"run {run_id} ({kind}) started: {facts(kind, seen)}"


def plan_line(run: Run) -> str | None:
    """What a replication will copy and why, once prepare decided it."""
    if run.plan is None:
        return None
    n, tables = len(run.plan.units), len(run.plan.tables)
    what = f"copies {n} units of {tables} tables" if n else f"copies nothing of {tables} tables"
    return f"plan: {what}: {printable(run.plan.reason)}" if run.plan.reason else f"plan: {what}"


def target_line(run: Run) -> str | None:
    """What a replication left on the target, once it ended."""
    state = run.switch.target_state
    if state == "switched":
        at, ms = run.switch.switched_at, run.switch.switch_ms
        return f"target: new copy live at {at} (switch {ms} ms)"
    if state == "unchanged":
        return "target unchanged: the live schemas were not touched"
    if state:
        return f"target: {state}"
    return None


def unit_line(name: str, u: UnitProgress) -> str:
    """One live progress line for a unit (names and errors made safe for a terminal)."""
    name = printable(name)
    bits = [f"{name:<32}", f"{u.state:<9}"]
    if u.rows is not None:
        bits.append(f"{u.rows:>9} rows")
    if u.bytes is not None:
        bits.append(f"{human_bytes(u.bytes):>10}")
    elif u.state == "running" and u.read is not None:  # live, from the worker copying it
        bits.append(f"{human_bytes(u.read):>10} read, {human_bytes(u.written or 0)} written")
    if u.worker:
        bits.append(str(u.worker))
    if u.origin:
        bits.append(f"from {printable(u.origin)}")
    if u.error and u.state in ("failed", "retrying", "error"):
        bits.append(f"error: {printable(str(u.error))[:120]}")
    return "  ".join(bits)


def duration(seconds: float) -> str:
    """75 -> '1m15s'."""
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def progress_line(p: eta.Progress) -> str:
    """``41% 45.1 MiB of 110.0 MiB, 21.3 MiB/s, copies end in 3s (cap 20.0 MB/s)``."""
    bits = [f"{p.fraction:.0%} {human_bytes(p.done_bytes)} of {human_bytes(p.expected_bytes)}"]
    bits.append(f"units {p.units_done}/{p.units}")
    if p.rate:
        bits.append(f"{human_bytes(p.rate)}/s")
    if p.eta_seconds is not None:
        bits.append(f"copies end in {duration(p.eta_seconds)}")
    line = ", ".join(bits)
    return line + (f" (cap {p.max_rate / 1e6:.1f} MB/s)" if p.max_rate else "")


class LiveView:
    """The run while it goes: on a terminal an overall byte bar (``rich``) above the unit lines,
    redrawn in place; elsewhere (CI, cron) plain lines, each printed when it changes (the
    progress line at most every :attr:`PLAIN_EVERY` seconds)."""

    PLAIN_EVERY = 2.0

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last: dict[str, str] = {}
        self._planned = False
        self._said_progress = 0.0
        self._live: Live | None = None

    def update(self, run: Run) -> None:
        now = time.time()
        shown = eta.progress(run, now)
        if self.tty:
            self._draw(run, shown)
        else:
            self._print(run, shown, now)
        if run.state.terminal:
            self.close()

    def _draw(self, run: Run, progress: eta.Progress | None) -> None:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, highlight=False, soft_wrap=False)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(screen(run, progress), refresh=True)

    def _print(self, run: Run, progress: eta.Progress | None, now: float) -> None:
        if not self._planned and (line := plan_line(run)):
            self._planned = True
            self.out.write(line + "\n")
        lines = {name: unit_line(name, u) for name, u in sorted(run.units.items())}
        for name, text in lines.items():
            if self._last.get(name) != text:
                self.out.write(text + "\n")
        self._last = lines
        if progress and progress.units and now - self._said_progress >= self.PLAIN_EVERY:
            line = "progress: " + progress_line(progress)
            if self._last.get("\0progress") != line:
                self.out.write(line + "\n")
                self._last["\0progress"] = line
            self._said_progress = now
        self.out.flush()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def screen(run: Run, progress: eta.Progress | None) -> Group:
    """What the terminal shows: the run's state, its plan, the overall bar, one line a unit."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(f"run {run.run_id} {run.kind}: {run.state}", style="bold")]
    if line := plan_line(run):
        parts.append(Text(line))
    if progress is not None and progress.units:
        total = max(progress.expected_bytes, 1)
        bar = Table.grid()
        bar.add_row(ProgressBar(total=total, completed=progress.done_bytes, width=60))
        bar.add_row(Text(progress_line(progress), overflow="fold"))
        parts.append(bar)
    parts += [Text(unit_line(name, u)) for name, u in sorted(run.units.items())]
    return Group(*parts)


def replication_summary(run: Run) -> str:
    """The end-of-run table: table, rows on both sides, bytes, spill, worker, seconds, verdict."""
    checks = {c["table"]: c for c in run.verification}
    totals = run.table_totals()
    rows = []
    for name in sorted(set(totals) | set(checks)):
        t = totals.get(name, TableTotal())
        c = checks.get(name)
        if c:
            verdict = "ok" if c["ok"] else "MISMATCH"
        else:
            verdict = "failed" if "failed" in t.states else "-"
        rows.append(
            [
                printable(name),
                c["source_rows"] if c else t.rows,
                c["target_rows"] if c else "-",
                human_bytes(t.bytes),
                "yes" if t.spilled else "no",
                ",".join(t.workers) or "-",
                f"{t.seconds:.2f}",
                c.get("how", "copied") if c else "-",
                verdict,
            ]
        )
    head = ["table", "source rows", "target rows", "bytes", "spilled", "worker", "seconds"]
    return table([*head, "how", "verdict"], rows)
