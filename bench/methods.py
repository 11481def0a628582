"""The methods compared, one function each, registered in :data:`METHODS`.

A method function runs one replication of the source's ``public`` into the emptied target and
returns its :class:`~bench.results.Outcome`; :func:`run_method` resets the target before it and
verifies the row counts after it. See docs/benchmarks.md for what each one runs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Callable

from bench import BENCH, MB, kept, say
from bench.data import checkpoint, reset_target, verify
from bench.measuring import du, last_line, run_measured
from bench.ours import kept_by_run, lock_to_audit, replicate, spilled_bytes, step_lines, units
from bench.reporting import steps_text
from bench.results import NotAvailable, Outcome, Result, RunFailed, Tally
from bench.stack import BenchStack

COMMON = "--no-owner --no-privileges"


def ours(b: BenchStack, replace: str = "swap", what: str = "ours", *options: str) -> Outcome:
    """``pagila-submit replicate`` on two fresh workers (their peak RSS is per run), replacing
    the target's copy as ``replace`` says (PAGILA_REPLACE)."""
    b.restart_workers({"PAGILA_REPLACE": replace})
    run, record = replicate(b, what, *options)
    detail = {
        "run_id": record["run_id"],
        "lock_to_audit": lock_to_audit(b, record),
        "switch_ms": record.get("switch_ms"),
        "target_state": record.get("target_state"),
        "units": units(record),
        "steps": step_lines(b, record["run_id"], run.started_at),
    }
    detail["keeps"] = kept_by_run(detail["steps"])
    return Outcome(run, spilled_bytes(record), detail)


def ours_in_place(b: BenchStack) -> Outcome:
    """The same, with ``PAGILA_REPLACE=in-place`` (today's behaviour before the swap)."""
    return ours(b, "in-place")


def _first_replica(b: BenchStack, what: str) -> None:
    """An untimed ``pagila-submit replicate`` (swap) into the emptied target: the replica the
    target's users build on."""
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    replicate(b, f"{what} (first replica, untimed)")


def ours_refresh(b: BenchStack) -> Outcome:
    """``ours`` over a target that already holds a replica (made untimed just before): the
    like-for-like run of ``ours-kept`` without the target-side objects."""
    _first_replica(b, "ours-refresh")
    checkpoint(b)  # as before every timed run: it pays for none of the first replica's writes
    return ours(b, "swap", "ours-refresh", "--full")  # the source is unchanged: copy anyway


def ours_kept(b: BenchStack) -> Outcome:
    """``ours`` over a replica that 30 target-side objects depend on (bench/kept.py): a first
    replica (untimed), the objects built and counted, then the timed run (swap), after which
    the objects are counted again and must read the new copy."""
    _first_replica(b, "ours-kept")
    before = kept.build(b)
    if kept.total(before) != kept.EXPECTED:
        raise RunFailed(f"ours-kept: built {kept.describe(before)}, not {kept.EXPECTED}")
    say(f"  ours-kept: the target holds {kept.describe(before)}")
    checkpoint(b)  # as before every timed run: it pays for none of the first replica's writes
    outcome = ours(b, "swap", "ours-kept", "--full")
    try:
        after = kept.check(b, "after the run")
    except RunFailed as exc:  # the run's numbers, for whoever reads why it failed
        took = f"{outcome.run.seconds:.2f} s, switch {outcome.detail['switch_ms']} ms"
        raise RunFailed(f"{exc} (the run took {took})") from None
    say(f"  ours-kept: after the run {kept.describe(after)}, reading the new copy")
    detail = {
        **outcome.detail,
        "objects": kept.total(before),
        "objects_after": kept.total(after),
        "objects_by_kind": after,
    }
    return Outcome(outcome.run, outcome.spilled, detail)


def dump_pipe(b: BenchStack) -> Outcome:
    """``pg_dump -Fc | pg_restore``: one pipe, no parallelism."""
    t = b.tools
    cmd = (
        f"set -o pipefail; {shlex.quote(t['pg_dump'])} -Fc -n public {COMMON} "
        f"-d {shlex.quote(b.conninfo('source'))} | {shlex.quote(t['pg_restore'])} {COMMON} "
        f"--exit-on-error -d {shlex.quote(b.conninfo('target'))}"
    )
    run = run_measured(["bash", "-c", cmd], b.env)
    if run.rc != 0:
        raise RunFailed(f"pg_dump|pg_restore: {last_line(run.stderr)}")
    return Outcome(run)


def dump_dir(b: BenchStack) -> Outcome:
    """``pg_dump -Fd -j 2`` into a folder, then ``pg_restore -j 2`` from it."""
    t = b.tools
    out = b.scratch("bench-dump-dir")
    cmd = (
        f"set -e; {shlex.quote(t['pg_dump'])} -Fd -j 2 -n public {COMMON} "
        f"-f {shlex.quote(str(out))} "
        f"-d {shlex.quote(b.conninfo('source'))}; du -sb {shlex.quote(str(out))} >&2; "
        f"{shlex.quote(t['pg_restore'])} -j 2 {COMMON} --exit-on-error "
        f"-d {shlex.quote(b.conninfo('target'))} {shlex.quote(str(out))}"
    )
    run = run_measured(["bash", "-c", cmd], b.env)
    spilled = du(out)
    shutil.rmtree(out, ignore_errors=True)
    if run.rc != 0:
        raise RunFailed(f"pg_dump -Fd: {last_line(run.stderr)}")
    return Outcome(run, spilled)


def pgcopydb(b: BenchStack) -> Outcome:
    """``pgcopydb clone`` with two table jobs and two index jobs (the reference)."""
    exe = shutil.which("pgcopydb")
    if not exe:
        raise NotAvailable("pgcopydb is not installed (apt-get install pgcopydb)")
    work = b.scratch("bench-pgcopydb")
    argv = [
        *(exe, "clone", "--source", b.conninfo("source"), "--target", b.conninfo("target")),
        *("--table-jobs", "2", "--index-jobs", "2", "--no-owner", "--no-acl"),
        *("--dir", str(work)),
    ]
    run = run_measured(argv, b.env)
    spilled = du(work)
    shutil.rmtree(work, ignore_errors=True)
    if run.rc != 0:
        err = [x for x in run.stderr.splitlines() if "ERROR" in x] or [last_line(run.stderr)]
        raise NotAvailable(f"pgcopydb failed: {err[0][-200:]}")
    return Outcome(run, spilled)


def _script(b: BenchStack, method: str, script: str, *options: str) -> Outcome:
    """Run one of the plain-script methods, and read its JSON summary."""
    tools = ("--pg-dump", b.tools["pg_dump"], "--pg-restore", b.tools["pg_restore"])
    run = run_measured([sys.executable, str(BENCH / script), *options, *tools], b.env)
    if run.rc != 0:
        raise RunFailed(f"{method}: {last_line(run.stderr)}")
    info = json.loads(last_line(run.stdout))
    return Outcome(run, info.get("spilled_bytes", 0), {"phases": info["phases"]})


def airflow(b: BenchStack) -> Outcome:
    """The replaced Airflow design, as a plain script (bench/airflow_copy.py)."""
    return _script(b, "airflow", "airflow_copy.py")


def _floor(b: BenchStack, fmt: str) -> Outcome:
    """The floor estimate (bench/floor_copy.py) in COPY format ``fmt``."""
    options = ("--format", fmt, "--jobs", "2", "--psql", b.tools["psql"])
    return _script(b, f"floor-{fmt}", "floor_copy.py", *options)


def floor_text(b: BenchStack) -> Outcome:
    """The floor with text COPY pipes."""
    return _floor(b, "text")


def floor_binary(b: BenchStack) -> Outcome:
    """The floor with binary COPY pipes."""
    return _floor(b, "binary")


METHODS: dict[str, Callable[[BenchStack], Outcome]] = {
    "ours": ours,
    "ours-in-place": ours_in_place,
    "ours-refresh": ours_refresh,
    "ours-kept": ours_kept,
    "pg_dump|pg_restore": dump_pipe,
    "dump-dir-j2": dump_dir,
    "pgcopydb": pgcopydb,
    "airflow": airflow,
    "floor-text": floor_text,
    "floor-binary": floor_binary,
}
"""Every method by the name the table and ``--methods`` use, in the table's order."""
NEEDS_PUBLIC = frozenset({"ours", "ours-in-place", "ours-refresh", "ours-kept", "pgcopydb"})
"""Methods that expect an existing ``public`` (the others restore an archive creating it)."""


def run_method(b: BenchStack, method: str, dataset: str) -> Result:
    """One run of ``method`` into an emptied target, verified by row counts."""
    reset_target(b, create_public=method in NEEDS_PUBLIC)
    result = Result.of(method, dataset, METHODS[method](b))
    verify(b, method)
    return result


def run_dataset(b: BenchStack, tally: Tally, ds: str, methods: list[str], runs: int) -> None:
    """Every method ``runs`` times on dataset ``ds`` (in the source), the order rotating."""
    for run in range(runs):
        order = methods[run % len(methods) :] + methods[: run % len(methods)]
        for m in order:
            if (m, ds) in tally.failures and tally.failures[(m, ds)].startswith("n/a"):
                continue
            try:
                r = run_method(b, m, ds)
            except NotAvailable as exc:
                tally.failures[(m, ds)] = f"n/a: {exc}"
                say(f"  {ds} run {run + 1} {m:20s} n/a: {exc}")
                continue
            except RunFailed as exc:
                tally.failures[(m, ds)] = str(exc)
                say(f"  {ds} run {run + 1} {m:20s} FAILED: {exc}")
                continue
            tally.results.append(r)
            say(
                f"  {ds} run {run + 1} {m:20s} {r.seconds:8.2f} s  peak RSS "
                f"{r.peak_rss / MB:6.0f} MB ({r.peak_proc})  "
                f"spilled {r.spilled / MB:7.1f} MB"
            )
            if m.startswith("ours"):
                say(f"  switch held {r.detail['switch_ms']} ms ({r.detail['target_state']})")
                say(steps_text(r.detail["steps"], r.seconds))
