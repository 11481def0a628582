"""Every text the benchmark prints or writes: the results table, our time breakdown, the
memory check, the machine facts, and the rewriting of docs/benchmarks.md's generated sections.

Only the text between the ``bench:*`` markers is rewritten; the rest of the file is by hand.
"""

from __future__ import annotations

import re
import statistics
from datetime import datetime
from typing import Any

from bench import MB, ROOT, say
from bench.kept import EXPECTED
from bench.results import Result, dataset_name

DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS_START, RESULTS_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
MEMORY_START, MEMORY_END = "<!-- bench:memory:start -->", "<!-- bench:memory:end -->"
KEPT_START, KEPT_END = "<!-- bench:kept:start -->", "<!-- bench:kept:end -->"
REFRESH_START, REFRESH_END = "<!-- bench:refresh:start -->", "<!-- bench:refresh:end -->"
SEEING_START, SEEING_END = "<!-- bench:seeing:start -->", "<!-- bench:seeing:end -->"
KEPT_HEAD = [
    "dataset",
    "ours s",
    "ours switch ms",
    "ours-refresh s",
    "ours-refresh switch ms",
    "ours-kept s",
    "ours-kept switch ms",
    "kept objects before / after",
    "ours-kept / ours",
    "ours-kept / ours-refresh",
    f"switch < 100 ms with {EXPECTED} kept objects",
    "at most 5 % apart",
]
SWITCH_LIMIT_MS = 100.0
APART_LIMIT = 0.05
HEAD = [
    "method",
    "dataset",
    "median s",
    "vs pgcopydb",
    "s per GB",
    "peak RSS MB",
    "spilled MB",
    "runs (s)",
]
GB = 1024 * MB
SPLIT_UNIT = re.compile(r"^(.*)#\d+of(\d+)$")
"""A unit of a split table, by its name (``public.rental#2of3``): the table, how many units."""


def summarize(
    results: list[Result],
    failures: dict[tuple[str, str], str],
    methods: list[str],
    datasets: list[str],
    sizes: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One row per method and dataset: median, ratio to pgcopydb, seconds per GB of the
    dataset's ``sizes`` (bytes of tables and indexes, when given), peaks, or why n/a."""
    rows = []
    for ds in datasets:
        gb = (sizes or {}).get(ds, 0) / GB
        group = [r for r in results if r.dataset == ds]
        med = {}
        for m in methods:
            times = [r.seconds for r in group if r.method == m]
            if times:
                med[m] = statistics.median(times)
        base = med.get("pgcopydb")
        for m in methods:
            runs = [r for r in group if r.method == m]
            if not runs:
                rows.append({"method": m, "dataset": ds, "na": failures.get((m, ds), "not run")})
                continue
            rows.append(
                {
                    "method": m,
                    "dataset": ds,
                    "median": med[m],
                    "times": [round(r.seconds, 2) for r in runs],
                    "ratio": (med[m] / base) if base else None,
                    "per_gb": (med[m] / gb) if gb else None,
                    "peak_rss": max(r.peak_rss for r in runs),
                    "peak_proc": max(runs, key=lambda r: r.peak_rss).peak_proc,
                    "spilled": max(r.spilled for r in runs),
                    "failed": failures.get((m, ds)),
                }
            )
    return rows


def table_text(rows: list[dict[str, Any]]) -> str:
    """The results table in Markdown (``|`` in a method name escaped)."""
    body = []
    for r in rows:
        if "na" in r:
            body.append([r["method"], r["dataset"], *["n/a"] * (len(HEAD) - 3), r["na"]])
            continue
        body.append(
            [
                r["method"],
                r["dataset"],
                f"{r['median']:.2f}",
                f"{r['ratio']:.2f}x" if r["ratio"] else "n/a",
                f"{r['per_gb']:.1f}" if r.get("per_gb") else "n/a",
                f"{r['peak_rss'] / MB:.0f} ({r['peak_proc']})",
                f"{r['spilled'] / MB:.1f}",
                ", ".join(f"{t:.2f}" for t in r["times"])
                + (f"; FAILED: {r['failed']}" if r.get("failed") else ""),
            ]
        )
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "|".join(" --- " for _ in HEAD) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def steps_text(steps: list[dict[str, Any]], seconds: float) -> str:
    """The STEP timeline of one of our runs, with the gap to the next line.

    The per-unit ``copied`` lines are folded into one line: when the last copy ended.
    """
    copies = [s for s in steps if s["msg"].startswith("copied ")]
    steps = [s for s in steps if not s["msg"].startswith("copied ")]
    if copies:
        last = max(copies, key=lambda s: s["t"])
        steps.append({**last, "msg": f"last of {len(copies)} copies committed"})
        steps.sort(key=lambda s: s["t"])
    out = []
    for i, s in enumerate(steps):
        nxt = steps[i + 1]["t"] if i + 1 < len(steps) else seconds
        out.append(f"    {s['t']:7.2f} s  (+{nxt - s['t']:6.2f})  {s['worker']}  {s['msg']}")
    out.append(f"    {seconds:7.2f} s  pagila-submit returned")
    return "\n".join(out)


def _unit_lines(units: dict[str, dict[str, Any]], most: int = 12) -> str:
    """The ``most`` slowest units, one line each."""
    slowest = sorted(units.items(), key=lambda kv: -float(kv[1].get("seconds") or 0))[:most]
    return "\n".join(
        f"    {name:32s} {u.get('rows') or 0:>9} rows {int(u.get('bytes') or 0) / MB:8.1f} MB "
        f"{float(u.get('seconds') or 0):7.2f} s  {u.get('worker') or ''}  "
        f"spilled={u.get('spilled')}"
        for name, u in slowest
    )


def _split_text(units: dict[str, dict[str, Any]]) -> str:
    """The split tables of a run and their units' count, e.g. ``public.rental 3``."""
    parts = {}
    for name in units:
        m = SPLIT_UNIT.match(name)
        if m:
            parts[m.group(1)] = int(m.group(2))
    return ", ".join(f"{t} {n}" for t, n in sorted(parts.items())) or "none"


def ours_breakdown(results: list[Result], datasets: list[str]) -> str:
    """Where our time goes: the STEP timeline and units of the median run of each dataset."""
    parts = []
    for ds in datasets:
        runs = sorted(
            (r for r in results if r.method == "ours" and r.dataset == ds), key=lambda r: r.seconds
        )
        if not runs:
            continue
        r = runs[len(runs) // 2]
        units = r.detail["units"]
        copy_sum = sum(float(u.get("seconds") or 0) for u in units.values())
        per_worker: dict[str, float] = {}
        for u in units.values():
            w = str(u.get("worker") or "?").split("@")[0]
            per_worker[w] = per_worker.get(w, 0.0) + float(u.get("seconds") or 0)
        balance = ", ".join(f"{w} {v:.2f} s" for w, v in sorted(per_worker.items()))
        to_audit = statistics.median(x.detail["lock_to_audit"] for x in runs)
        held = statistics.median(float(x.detail.get("switch_ms") or 0) for x in runs)
        parts.append(
            f"ours, {ds}: lock to audit row {to_audit:.2f} s (median of {len(runs)} runs; "
            "the target's measure, without the submit script's start and exit); the switch "
            f"held its transaction {held:.1f} ms (median)\n"
            f"ours, {ds}, median run ({r.seconds:.2f} s, {len(units)} units, "
            f"{copy_sum:.2f} s of copy work over 2 workers: {balance}):\n"
            f"  split tables (units): {_split_text(units)}\n"
            "  timeline (seconds since pagila-submit started):\n"
            f"{steps_text(r.detail['steps'], r.seconds)}\n"
            f"  slowest units:\n{_unit_lines(units)}"
        )
    return "\n\n".join(parts)


def _medians(runs: list[Result]) -> dict[str, float]:
    """Median seconds and switch ms, and the largest switch ms, of some of our runs."""
    held = [float(r.detail.get("switch_ms") or 0) for r in runs]
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "switch_ms": statistics.median(held),
        "switch_max": max(held),
        "runs": len(runs),
    }


def kept_summary(
    results: list[Result], failures: dict[tuple[str, str], str], datasets: list[str]
) -> list[dict[str, Any]]:
    """Per dataset where ``ours-kept`` ran (or failed): ours, ours-refresh and ours-kept
    (medians), the ratios, and the issue's two verdicts. The 5 % verdict is taken against
    ``ours-refresh`` (the same runs without the objects) when it ran, else against ``ours``."""
    rows = []
    for ds in datasets:
        by = {
            m: [r for r in results if r.method == m and r.dataset == ds]
            for m in ("ours", "ours-refresh", "ours-kept")
        }
        failed = failures.get(("ours-kept", ds))
        if not by["ours-kept"] and not failed:
            continue
        row: dict[str, Any] = {"dataset": ds, "failed": failed}
        row |= {m: _medians(runs) for m, runs in by.items() if runs}
        base = "ours-refresh" if "ours-refresh" in row else "ours" if "ours" in row else None
        row["base"] = base
        k = row.get("ours-kept")
        if k is None:  # every run of ours-kept failed: no verdict
            row["switch_ok"] = row["apart_ok"] = False
            rows.append(row)
            continue
        k["before"] = min(int(r.detail.get("objects") or 0) for r in by["ours-kept"])
        k["after"] = min(int(r.detail.get("objects_after") or 0) for r in by["ours-kept"])
        k["keeps"] = by["ours-kept"][0].detail.get("keeps")
        for b in ("ours", "ours-refresh"):
            if b in row:
                row[f"vs {b}"] = k["seconds"] / row[b]["seconds"]
        row["switch_ok"] = (
            k["switch_max"] < SWITCH_LIMIT_MS and k["after"] == EXPECTED and not failed
        )
        row["apart_ok"] = abs(row[f"vs {base}"] - 1) <= APART_LIMIT if base else None
        rows.append(row)
    return rows


def kept_table_text(rows: list[dict[str, Any]]) -> str:
    """The kept-objects comparison in Markdown, one row per dataset."""

    def verdict(ok: bool | None, why: str) -> str:
        if ok is None:
            return f"n/a ({why})"
        return f"**{'met' if ok else 'not met'}** ({why})"

    body = []
    for r in rows:
        cells = [r["dataset"]]
        for m in ("ours", "ours-refresh", "ours-kept"):
            x = r.get(m)
            cells += [f"{x['seconds']:.2f}", f"{x['switch_ms']:.1f}"] if x else ["n/a", "n/a"]
        k = r.get("ours-kept")
        failed = f"FAILED: {r['failed']}" if r["failed"] else ""
        if k is None:
            cells += ["n/a"] * 3 + [verdict(False, failed), verdict(False, "ours-kept failed")]
            body.append(cells)
            continue
        cells.append(f"{k['before']} / {k['after']} (the run's plan: {k['keeps']})")
        for base in ("ours", "ours-refresh"):
            ratio = r.get(f"vs {base}")
            cells.append(f"{ratio:.3f}x" if ratio else "n/a")
        why = f"largest of {k['runs']}: {k['switch_max']:.1f} ms"
        cells.append(verdict(r["switch_ok"], why + (f"; {failed}" if failed else "")))
        base = r["base"]
        cells.append(
            verdict(r["apart_ok"], f"{r[f'vs {base}'] - 1:+.1%} vs {base}" if base else "no base")
        )
        body.append(cells)
    lines = ["| " + " | ".join(KEPT_HEAD) + " |", "|" + "|".join(" --- " for _ in KEPT_HEAD) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def kept_text(rows: list[dict[str, Any]], machine: dict[str, Any], command: str) -> str:
    """The docs' kept-objects section: machine, the comparison table."""
    return (
        "## Kept objects\n\n"
        "Written by `bench/run.py` when `ours-kept` ran; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n"
        f"{kept_table_text(rows)}\n\n"
        "Seconds and switch ms are medians of the runs; the switch verdict takes the largest "
        f"switch of the `ours-kept` runs and needs all {EXPECTED} objects found after each run; "
        "the 5 % verdict compares the `ours-kept` median with `ours-refresh` (the same runs "
        "without the objects) when it ran, else with `ours` (a first replica into an emptied "
        "target). The run's plan is the number its `keep N objects` STEP line gives: the "
        "objects it makes again; the grants and comments it adds again are not in it.\n"
    )


def refresh_section(table: str, machine: dict[str, Any], command: str) -> str:
    """The docs' refresh section: machine, the table of the four runs."""
    return (
        "## Refresh and resume\n\n"
        "Written by `bench/run.py --refresh`; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n{table}\n"
    )


def seeing_section(table: str, machine: dict[str, Any], command: str) -> str:
    """The docs' section on the progress view's ETA and the ``--max-rate`` cap."""
    return (
        "## Progress, ETA and the cap on the source\n\n"
        "Written by `bench/run.py --seeing`; do not edit by hand. The ETA is the copies' end "
        "(`status --json` `progress.eta_seconds`), compared with when they really ended; the "
        "cap's achieved rate is the bytes read from the source over the copy phase.\n\n"
        f"{machine_text(machine, command)}\n{table}\n"
    )


def machine_text(m: dict[str, Any], command: str) -> str:
    """The command, machine, servers and tools, as a Markdown list."""
    settings = ", ".join(f"{k}={v}" for k, v in m["settings"].items())
    return (
        f"- command: `{command}` ({datetime.now().strftime('%Y-%m-%d %H:%M')})\n"
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, "
        f"Linux {m['kernel']}, "
        f"Python {m['python']}\n"
        f"- servers ({m['servers']}): {m['postgres']}, both on this machine; {settings}\n"
        f"- tools: {m['pg_dump']}; pgcopydb {m['pgcopydb']}\n"
    )


def results_text(
    rows: list[dict[str, Any]],
    datasets: list[dict[str, Any]],
    machine: dict[str, Any],
    command: str,
    ours_text: str,
) -> str:
    """The docs' results section: machine, datasets, the table, our breakdown."""
    ds_lines = "\n".join(dataset_line(d) for d in datasets)
    return (
        "## Results\n\n"
        "Written by `bench/run.py`; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n"
        f"Datasets:\n\n{ds_lines}\n\n"
        f"{table_text(rows)}\n\n"
        "Peak RSS is the largest client-side process (its VmHWM), named in brackets; server "
        "backends are not counted. Spilled is what the method wrote to local disk (our and the "
        "Airflow spools past their cap, the dump directory, pgcopydb's work folder).\n\n"
        "### Where our time goes\n\n"
        f"```\n{ours_text}\n```\n"
    )


def dataset_line(d: dict[str, Any]) -> str:
    """One dataset in the docs: its size (what seconds per GB divide), rows, and the seconds
    making it took; the wide one (:mod:`bench.wide`) with its table's part."""
    pagila = (
        f"rental {d['rental']}, inventory {d['inventory']}, payment partitions "
        f"{d['payment_parts'][0]}..{d['payment_parts'][1]} rows each"
    )
    if "wide_rows" in d:
        pagila = (
            f"Pagila x{d['scale']} ({pagila}) plus `public.wide_rows`: {d['wide_rows']} rows "
            f"of about 1.7 KB, text key, {d['wide_bytes'] / MB:.0f} MB with its indexes, "
            f"made in {d['wide_seconds']} s"
        )
    return (
        f"- {dataset_name(d)}: {d['bytes'] / MB:.0f} MB of tables and indexes in `public`, "
        f"{d['rows']} rows; {pagila}; the source made in {d['seconds']} s"
    )


def memory_text(mem: dict[str, Any], machine: dict[str, Any], command: str) -> str:
    """The docs' memory-check section."""
    peaks = ", ".join(f"{k} {v / MB:.0f} MB" for k, v in sorted(mem["peaks"].items()))
    return (
        "## Memory check\n\n"
        "Written by `bench/run.py --memory`; do not edit by hand.\n\n"
        f"{machine_text(machine, command)}\n"
        f"- one table, `public.bench_memory`: {mem['rows']} rows, "
        f"{mem['table_bytes'] / MB:.0f} MB of "
        f"COPY data, replicated with `pagila-submit replicate --tables bench_memory` and "
        f"`PAGILA_SPOOL_MAX_BYTES` = {mem['cap_mb']} MB, workers restarted just before\n"
        f"- spilled to disk: {mem['spilled']}; {mem['seconds']} s\n"
        f"- largest worker process peak RSS: {mem['worker_peak_rss'] / MB:.0f} MB; "
        "limit cap + 100 MB = "
        f"{mem['limit'] / MB:.0f} MB: **{'OK' if mem['ok'] else 'OVER'}**\n"
        f"- every process of the worker trees: {peaks}\n"
    )


def rewrite_section(text: str, start: str, end: str, body: str) -> str:
    """``text`` with what lies between the ``start`` and ``end`` markers replaced by ``body``."""
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    return text.rstrip() + "\n\n" + block + "\n"


def write_docs(section: str, start: str, end: str) -> None:
    """Rewrite one generated section of docs/benchmarks.md."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    DOCS.write_text(rewrite_section(text, start, end, section))
    say(f"wrote {DOCS.relative_to(ROOT)}")
