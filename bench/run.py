"""`make bench`: replicate Pagila (as loaded, and scaled) with this project and with the usual
alternatives, on the same two local servers, and write the results into docs/benchmarks.md.

    .venv/bin/python bench/run.py [--scales 1,50] [--runs 3] [--methods ours,pgcopydb,..]
    .venv/bin/python bench/run.py --scales 1,50 --wide-gb 2   # and x1 + a 2 GB wide-row table
    .venv/bin/python bench/run.py --memory            # the spool-cap memory check only
    .venv/bin/python bench/run.py --kept --scales 50  # ours with and without 30 kept objects
    .venv/bin/python bench/run.py --refresh --scales 50  # refresh and resume against a full copy
    .venv/bin/python bench/run.py --refresh --scales 50 --runs 3  # the same, medians of 3 passes
    .venv/bin/python bench/run.py --seeing --scales 50   # the ETA's truth, --max-rate's hold

The script brings up its own stack (two PostgreSQL servers + Redis, state in --state-dir, purged
at the end), applies the benchmark's server settings to both servers, loads Pagila with
``pagila-submit load``, scales it with bench/scale.sql, then for each dataset runs every method
--runs times (the method order rotates from run to run), resetting the target before each run
and checking its row counts against the source after it. ``--wide-gb X`` adds one dataset after
them: the smallest scale plus a table of about X GB of wide rows (bench/wide.py, bench/wide.sql).
See docs/benchmarks.md for the methods.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: import the bench package from the checkout
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import ROOT, data, machine, memory, methods, refresh, reporting, say, seeing, wide
from bench.results import RunFailed, Tally
from bench.stack import BenchStack

KEPT = ("ours", "ours-refresh", "ours-kept")
"""``--kept``'s methods unless ``--methods`` says otherwise."""


def main(argv: list[str] | None = None) -> int:
    """The benchmark's steps, one call each."""
    args = parse_args(argv)
    b = BenchStack(Path(args.state_dir), args.servers, args.sql_dir, args.keep)
    tally = Tally()
    facts: dict[str, Any] = {}
    try:
        b.up()  # stack, the issue's server settings, the methods' environment
        if args.split_rows is not None:  # our workers and submitter read it from b.env
            b.env["PAGILA_SPLIT_ROWS"] = str(args.split_rows)
        data.load(b)  # Pagila into the source
        facts = machine.facts(b)
        if args.memory:
            return memory_check(b, args, facts)
        if args.refresh:
            return section_check(
                b,
                args,
                facts,
                "refresh",
                lambda b, dataset: refresh.refresh_passes(b, dataset, args.passes),
                refresh.table_text,
                reporting.refresh_section,
                (reporting.REFRESH_START, reporting.REFRESH_END),
            )
        if args.seeing:
            return section_check(
                b,
                args,
                facts,
                "seeing",
                seeing.seeing_check,
                seeing.table_text,
                reporting.seeing_section,
                (reporting.SEEING_START, reporting.SEEING_END),
            )
        for n in args.scales:
            tally.datasets.append(data.scale(b, n))  # the source made Pagila xN
            methods.run_dataset(b, tally, f"x{n}", args.methods, args.runs)
        if args.wide_gb:
            tally.datasets.append(wide.make(b, args.scales[0], args.wide_gb))
            methods.run_dataset(b, tally, tally.names()[-1], args.methods, args.runs)
    finally:
        stop(b, tally, args.json_out)
    return report(tally, args, facts)


def memory_check(b: BenchStack, args: argparse.Namespace, facts: dict[str, Any]) -> int:
    """``--memory``: the spool-cap check alone, its section written unless ``--no-docs``."""
    mem = memory.memory_check(b, args.memory_cap_mb, args.memory_table_mb)
    if not args.no_docs:
        section = reporting.memory_text(mem, facts, args.command)
        reporting.write_docs(section, reporting.MEMORY_START, reporting.MEMORY_END)
    return 0 if mem["ok"] else 1


def section_check(
    b: BenchStack,
    args: argparse.Namespace,
    facts: dict[str, Any],
    name: str,
    measure: Callable[[BenchStack, str], Any],
    text: Callable[[Any], str],
    section: Callable[[str, dict[str, Any], str], str],
    markers: tuple[str, str],
) -> int:
    """``--refresh`` or ``--seeing``: ``measure`` on the largest scale, its table printed and
    its docs section (between ``markers``) written unless ``--no-docs``."""
    n = max(args.scales)
    data.scale(b, n)
    try:
        result = measure(b, f"x{n}")
    except RunFailed as exc:
        say(f"{name} FAILED: {exc}")
        return 1
    table = text(result)
    say("\n" + table)
    if not args.no_docs:
        reporting.write_docs(section(table, facts, args.command), *markers)
    return 0


def stop(b: BenchStack, tally: Tally, json_out: str | None) -> None:
    """The stack down (unless --keep), and every run's raw result saved if asked."""
    try:
        b.down()
    except Exception as exc:  # keep the results even if the stack does not stop cleanly
        say(f"stack down failed: {exc}")
    if json_out:
        Path(json_out).write_text(
            json.dumps([r.__dict__ for r in tally.results], indent=1, default=str)
        )


def report(tally: Tally, args: argparse.Namespace, facts: dict[str, Any]) -> int:
    """Print the table, our breakdown and the kept-objects comparison; write their docs
    sections (``--kept``: that one only); 1 if a run failed."""
    datasets = tally.names()
    rows = reporting.summarize(tally.results, tally.failures, args.methods, datasets, tally.sizes())
    say("\n" + reporting.table_text(rows))
    ours_text = reporting.ours_breakdown(tally.results, datasets)
    say("\n" + ours_text)
    kept_rows = reporting.kept_summary(tally.results, tally.failures, datasets)
    if kept_rows:
        say("\n" + reporting.kept_table_text(kept_rows))
    if not args.no_docs and not args.kept:
        section = reporting.results_text(rows, tally.datasets, facts, args.command, ours_text)
        reporting.write_docs(section, reporting.RESULTS_START, reporting.RESULTS_END)
    if not args.no_docs and kept_rows:
        section = reporting.kept_text(kept_rows, facts, args.command)
        reporting.write_docs(section, reporting.KEPT_START, reporting.KEPT_END)
    return 1 if any(not v.startswith("n/a") for v in tally.failures.values()) else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``methods`` and ``scales`` come back as checked lists, plus ``command``."""
    names = list(methods.METHODS)
    shared = ROOT.parent / "shared" / "pagila"
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="scale factor of the large dataset")
    parser.add_argument(
        "--scales",
        help="comma list of scale factors, e.g. 1,10,50 (overrides --scale; default 1,<scale>)",
    )
    parser.add_argument(
        "--wide-gb",
        type=float,
        default=0.0,
        help="also a dataset of the smallest scale plus a wide-row table of about this many GB "
        "(bench/wide.sql; the speed table only; default 0: none)",
    )
    parser.add_argument(
        "--split-rows",
        type=int,
        help="PAGILA_SPLIT_ROWS for our workers (default: the project's), e.g. to split a "
        "small --wide-gb table in a test",
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="runs of each method (default 3); with --refresh, passes of the five runs, each "
        "from a new full copy, reported as medians (default 1)",
    )
    parser.add_argument(
        "--methods",
        help=f"comma list of {', '.join(names)} (default: all; with --kept: {', '.join(KEPT)})",
    )
    parser.add_argument("--memory", action="store_true", help="run only the spool-cap memory check")
    parser.add_argument(
        "--kept",
        action="store_true",
        help="the kept-objects check: write only its docs section (not the results table)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="only the refresh and resume runs (largest scale), their docs section",
    )
    parser.add_argument(
        "--seeing",
        action="store_true",
        help="only the ETA and --max-rate checks (largest scale), their docs section",
    )
    parser.add_argument("--memory-cap-mb", type=int, default=32)
    parser.add_argument("--memory-table-mb", type=int, default=150)
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("BENCH_STATE_DIR")
        or str(Path(tempfile.gettempdir()) / "pagila-bench"),
    )
    parser.add_argument("--servers", default=os.environ.get("PAGILA_STACK_SERVERS", "auto"))
    parser.add_argument(
        "--sql-dir",
        default=os.environ.get("PAGILA_SQL_DIR") or (str(shared) if shared.is_dir() else None),
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--json-out", help="also write every run's raw result to this file")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.passes = args.runs or 1
    args.runs = args.runs or 3
    args.command = "python bench/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    chosen = args.methods or ",".join(KEPT if args.kept else names)
    args.methods = [m.strip() for m in chosen.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in methods.METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(names)}")
    args.scales = sorted(
        {int(x) for x in (args.scales or f"1,{args.scale}").split(",") if x.strip()}
    )
    if any(n < 1 or n > 20000 for n in args.scales):
        parser.error("scales must be between 1 and 20000")
    if args.wide_gb < 0 or (args.split_rows is not None and args.split_rows < 0):
        parser.error("--wide-gb and --split-rows must not be negative")
    return args


if __name__ == "__main__":
    sys.exit(main())
