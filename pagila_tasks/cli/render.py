"""Printing runs for people: live per-unit lines while waiting, and the final summary table."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from pagila_tasks.base.names import printable
from pagila_tasks.run.model import Run, TableTotal, UnitProgress


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
    if u.worker:
        bits.append(str(u.worker))
    if u.origin:
        bits.append(f"from {printable(u.origin)}")
    if u.error and u.state in ("failed", "retrying"):
        bits.append(f"error: {printable(str(u.error))[:120]}")
    return "  ".join(bits)


class LiveView:
    """Redraws unit lines on a terminal; prints only changed lines elsewhere (CI, cron)."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0
        self._last: dict[str, str] = {}
        self._planned = False

    def update(self, run: Run) -> None:
        if not self._planned and (line := plan_line(run)):  # once, above the unit lines
            self._planned = True
            if self.tty and self._drawn:  # above what was drawn: it is drawn again below
                self.out.write(f"\x1b[{self._drawn}F\x1b[2K")
            self.out.write(line + "\n")
            self._drawn = 0
        lines = {name: unit_line(name, u) for name, u in sorted(run.units.items())}
        if self.tty:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F")
            header = f"run {run.run_id} {run.kind}: {run.state}"
            body = [header, *lines.values()]
            self.out.write("".join(f"\x1b[2K{ln}\n" for ln in body))
            self._drawn = len(body)
        else:
            for name, text in lines.items():
                if self._last.get(name) != text:
                    self.out.write(text + "\n")
        self._last = lines
        self.out.flush()


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
