"""``--refresh``: what a refresh costs when nothing or little changed, and a resubmission after
a run cut short by ``kill -9`` of every worker, each against a full copy, in one run on the same
servers and dataset (the largest ``--scales``).

Rows: the full copy; a re-run on the unchanged source; a re-run after 1 % of ``rental``'s rows
were updated (spread over the key space) and 1,000 rows inserted into and 500 deleted from
``payment`` (applied in place); a quarter of ``rental`` updated and applied in place with the
share rule lifted (what the rule weighs); after another change that includes the schema (so a
whole copy is built), a run killed (every worker process, ``kill -9``) once half its units were
committed to staging, cancelled, then resubmitted (the resubmission, which resumes, is timed).
Each row gives the run's seconds, its share of the full copy's, the units it copied, the bytes
it read from the source (COPY streams, and the keys, row hashes and rows a refresh compares) and
the bytes it wrote to the target (COPY streams, into the copy or a refresh's work tables, which
receive exactly what the comparison read), each against the full copy's. The target's row
counts are checked against the source's after every run. ``--runs N`` makes N passes of the
five runs, each from a new full copy, and reports each row's median and every pass's share
(one pass by default; this machine's spread from pass to pass is wide).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from typing import Any

from bench import MB, say
from bench.data import checkpoint, reset_target, table_counts
from bench.ours import replicate
from bench.results import RunFailed
from bench.stack import BenchStack
from pagila_stack import procfs

CHANGE = """
UPDATE public.rental SET return_date = coalesce(return_date, rental_date) + interval '1 second'
WHERE rental_id %% 100 = %(phase)s;
INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
SELECT p.customer_id, p.staff_id, p.rental_id, p.amount + 1, p.payment_date
FROM public.payment p ORDER BY p.payment_id LIMIT 1000;
DELETE FROM public.payment WHERE payment_id IN (
    SELECT payment_id FROM public.payment ORDER BY payment_id DESC OFFSET 1000 LIMIT 500);
"""
"""1 % of rental's rows (every hundredth key, so every range), 1,000 payments added and 500
deleted; ``phase`` picks which hundredth, so each change touches other rows."""

QUARTER = "UPDATE public.rental SET staff_id = 3 - staff_id WHERE rental_id % 4 = 0"
"""A quarter of rental's rows, spread over the key space: the in-place rule's boundary
(:data:`pagila_tasks.run.changeplan.MAX_SHARE`)."""

SCHEMA_CHANGE = "COMMENT ON TABLE public.film IS %(note)s"
"""Before the run that is cut short: a changed schema, so that it builds a whole new copy (a
change of rows alone is applied in place, with no staging copy to resume)."""


def refresh_passes(b: BenchStack, dataset: str, passes: int) -> list[list[dict[str, Any]]]:
    """``passes`` times the five runs (:func:`refresh_check`), each pass from a new full copy
    of the source as the pass before left it: one list of rows per pass."""
    done = []
    for n in range(passes):
        if passes > 1:
            say(f"refresh pass {n + 1} of {passes}")
        done.append(refresh_check(b, dataset))
    return done


def refresh_check(b: BenchStack, dataset: str) -> list[dict[str, Any]]:
    """The five runs in order; one row each."""
    reset_target(b, create_public=True)
    checkpoint(b)
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    rows = [_timed(b, "full copy", dataset)]
    rows.append(_timed(b, "unchanged source", dataset))
    _change(b, 1)
    rows.append(_timed(b, "1 % of rental + 1,000/500 rows of payment changed", dataset))
    with b.cursor("source") as cur:  # the in-place rule's boundary, applied in place anyway
        cur.execute(QUARTER)
    checkpoint(b)
    b.restart_workers({"PAGILA_REPLACE": "swap", "PAGILA_CHANGES_MAX_SHARE": "1"})
    rows.append(_timed(b, "25 % of rental changed, applied in place (MAX_SHARE lifted)", dataset))
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    _change(b, 2, schema=True)
    rows.append(_cut_short(b, dataset))
    full = rows[0]
    for row in rows:
        row["share"] = round(row["seconds"] / full["seconds"], 3) if full["seconds"] else None
        row["bytes_share"] = round(row["bytes"] / full["bytes"], 3) if full["bytes"] else None
        row["written_share"] = (
            round(row["written"] / full["written"], 3) if full["written"] else None
        )
    return rows


def _change(b: BenchStack, phase: int, schema: bool = False) -> None:
    with b.cursor("source") as cur:
        cur.execute(CHANGE, {"phase": phase})
        if schema:
            cur.execute(SCHEMA_CHANGE, {"note": f"phase {phase} at {time.time()}"})  # new each run
    b.admin("source", "ANALYZE public.rental")
    checkpoint(b)


def _timed(b: BenchStack, what: str, dataset: str, *options: str) -> dict[str, Any]:
    """One ``pagila-submit replicate``, timed, checked against the source's counts."""
    run, record = replicate(b, what, *options)
    _check(b, what)
    units = record.get("units", {})
    copied = [u for u in units.values() if u.get("state") == "done"]
    plan = record.get("plan") or {}
    compared = int(plan.get("compared_bytes") or 0)  # read, and written to the work tables
    written = sum(int(u.get("bytes") or 0) for u in copied) + compared
    row = {
        "what": what,
        "dataset": dataset,
        "seconds": round(run.seconds, 2),
        "units": f"{len(copied)}/{len(units) or len(record.get('verification') or [])}",
        "bytes": written,
        "written": written,
        "reason": plan.get("reason", ""),
    }
    say(f"  refresh {what}: {row['seconds']:.2f} s, units {row['units']}, {row['reason']}")
    return row


def _check(b: BenchStack, what: str) -> None:
    source, target = table_counts(b, "source"), table_counts(b, "target")
    if source != target:
        bad = sorted(t for t in source if source[t] != target.get(t))[:5]
        raise RunFailed(f"refresh {what}: row counts differ from the source: {bad}")


def _cut_short(b: BenchStack, dataset: str) -> dict[str, Any]:
    """A run killed with half its units committed to staging, cancelled, then resubmitted."""
    proc = subprocess.run(
        [*b.submit_argv(), "replicate", "--no-wait", "--json"],
        env=b.env,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    total, done = _wait_half(b, run_id)
    for pid in procfs.descendants(b.worker_roots()):
        os.kill(pid, signal.SIGKILL)
    say(f"  refresh: killed every worker with {done} of {total} units committed")
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    cancel = [*b.submit_argv(), "cancel", run_id]
    subprocess.run(cancel, env=b.env, capture_output=True, check=False)
    checkpoint(b)
    row = _timed(b, "resubmission after kill -9 of every worker", dataset)
    row["killed_at"] = f"{done}/{total}"
    return row


def _wait_half(b: BenchStack, run_id: str) -> tuple[int, int]:
    """(units planned, units committed) once at least half are committed to staging."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with b.cursor("target") as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM json_array_elements(units::json)), "
                "(SELECT count(*) FROM pagila_support.staged_units u WHERE u.run_id = r.run_id) "
                "FROM pagila_support.staged_runs r WHERE r.run_id = %s",
                (run_id,),
            )
            row = cur.fetchone()
        if row and row[1] * 2 >= row[0]:
            return int(row[0]), int(row[1])
        time.sleep(0.02)
    raise RunFailed(f"refresh: run {run_id} never had half its units committed")


def table_text(passes: list[list[dict[str, Any]]]) -> str:
    """The refresh table, as printed and written to docs/benchmarks.md: with several passes,
    each run's median seconds and share of its pass's full copy, and every pass's share (units,
    bytes and plans from the first pass: the same changes give the same ones)."""
    many = len(passes) > 1
    head = (
        "| run | seconds | of the full copy | units copied | MB read from the source | "
        "of the full copy's | MB written to the target | of the full copy's |"
        + (" each pass, of its full copy |" if many else "")
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" * many)]

    def pct(value: float | None) -> str:
        return f"{value * 100:.1f} %" if value is not None else "-"

    for i, r in enumerate(passes[0]):
        same = [p[i] for p in passes]
        seconds = statistics.median(x["seconds"] for x in same)
        shares = [x["share"] for x in same if x.get("share") is not None]
        share = statistics.median(shares) if shares else None
        what = r["what"] + (f" (killed at {r['killed_at']})" if r.get("killed_at") else "")
        each = f" {', '.join(pct(x) for x in shares)} |" if many else ""
        lines.append(
            f"| {what} | {seconds:.2f} | {pct(share)} | {r['units']} | "
            f"{r['bytes'] / MB:.1f} | {pct(r.get('bytes_share'))} | "
            f"{r['written'] / MB:.1f} | {pct(r.get('written_share'))} |{each}"
        )
    reasons = [f"- {r['what']}: {r['reason']}" for r in passes[0] if r.get("reason")]
    return "\n".join(lines) + "\n\nWhat each run's plan said:\n\n" + "\n".join(reasons)
