"""``--seeing``: how true the progress view's ETA is, and how closely ``--max-rate`` holds, on
the largest ``--scales`` dataset, in one run on the same servers.

ETA: one full copy on two workers, its run record sampled every 0.05 s from Redis (as
``status --json`` reads it); for every sample taken once 20 % of the bytes were copied and
before the copies ended, the ETA is compared with the time the copies really took to end (the
last unit's commit). Cap: full copies with ``--max-rate`` on 2 and on 4 worker processes; the
achieved rate is the bytes read from the source over the copy phase (first unit's start to the
last unit's commit), against the cap.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from typing import Any

import redis

from bench import MB, say
from bench.data import checkpoint, reset_target
from bench.ours import replicate
from bench.results import RunFailed
from bench.stack import BenchStack
from pagila_tasks.run import eta as estimate
from pagila_tasks.run.model import Run
from pagila_tasks.run.record import RunRecord

SAMPLE_EVERY = 0.05
TOLERANCE_S = 0.1
"""Seconds of ETA error forgiven near the end, where 20 % of what is left is less than the
progress interval (the counts are that old)."""
CAP = "20MB/s"
CAP_BYTES = 20_000_000


def eta_check(b: BenchStack, dataset: str, which: str) -> dict[str, Any]:
    """One full copy sampled: per sample (seconds since submit, fraction, ETA, truth)."""
    checkpoint(b)
    proc = subprocess.run(
        [*b.submit_argv(), "replicate", "--full", "--no-wait", "--json"],
        env=b.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RunFailed(f"eta: pagila-submit exit {proc.returncode}: {proc.stderr.strip()}")
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]
    record = RunRecord(redis.Redis.from_url(b.env["PAGILA_REDIS_URL"]))
    samples: list[tuple[float, float, float | None]] = []
    run: Run | None = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        run = record.get(run_id)
        now = time.time()
        progress = estimate.progress(run, now) if run else None
        if progress is not None and progress.units:
            samples.append((now, progress.fraction, progress.eta_seconds))
        if run is None or run.state.terminal:
            break
        time.sleep(SAMPLE_EVERY)
    if run is None or str(run.state) != "succeeded":
        raise RunFailed(f"eta: run {run_id} did not succeed: {run.error if run else 'lost'}")
    ends = [u.ended_at for u in run.units.values() if u.ended_at]
    starts = [u.started_at for u in run.units.values() if u.started_at]
    copy_end = max(ends)
    errors = [
        (eta - (copy_end - t)) / (copy_end - t)
        for t, fraction, eta in samples
        if fraction >= 0.2 and eta is not None and t < copy_end
    ]
    usable = [
        (eta - (copy_end - t)) / (copy_end - t)
        for t, fraction, eta in samples
        if fraction >= 0.2 and eta is not None and copy_end - t >= 1.0
    ]
    row = {
        "dataset": dataset,
        "which": which,
        "copy_seconds": round(copy_end - min(starts), 2),
        "samples": len(errors),
        "median_error": round(statistics.median(errors), 3) if errors else None,
        "worst_error": round(max(errors, key=abs), 3) if errors else None,
        "worst_error_1s": round(max(usable, key=abs), 3) if usable else None,
        "within_20": sum(abs(e) <= 0.2 for e in errors),
        "within_tolerance": sum(
            abs(eta - (copy_end - t)) <= max(0.2 * (copy_end - t), TOLERANCE_S)
            for t, fraction, eta in samples
            if fraction >= 0.2 and eta is not None and t < copy_end
        ),
    }
    say(f"  eta: {row}")
    for t, fraction, eta in samples:
        if t < copy_end and fraction >= 0.2:
            left = copy_end - t
            say(f"    {t - min(starts):5.2f} s: {fraction:4.0%}, ETA {eta:.2f}, truth {left:.2f}")
    return row


def cap_check(b: BenchStack, dataset: str, workers: int) -> dict[str, Any]:
    """A full copy capped at :data:`CAP` on ``workers`` worker processes."""
    reset_target(b, create_public=True)
    checkpoint(b)
    b.restart_workers({"PAGILA_REPLACE": "swap"}, n=workers)
    run, record = replicate(b, f"capped on {workers} workers", "--full", "--max-rate", CAP)
    units = [u for u in record["units"].values() if u.get("started_at")]
    first = min(u["started_at"] for u in units)
    last = max(u["ended_at"] for u in units)
    copied = sum(int(u.get("bytes") or 0) for u in units)
    rate = copied / (last - first)
    row = {
        "dataset": dataset,
        "workers": workers,
        "cap": CAP_BYTES,
        "bytes": copied,
        "copy_seconds": round(last - first, 2),
        "rate": round(rate),
        "off": round(rate / CAP_BYTES - 1, 3),
        "seconds": round(run.seconds, 2),
        "processes": len({(u.get("worker"), u.get("pid")) for u in units}),
    }
    say(f"  cap: {row}")
    return row


def seeing_check(b: BenchStack, dataset: str) -> dict[str, Any]:
    """The ETA runs (a first copy, with no earlier run to learn sizes and per-unit cost from,
    then a second), then the capped runs on 2 and 4 workers."""
    reset_target(b, create_public=True)
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    etas = [
        eta_check(b, dataset, "first copy (sizes from the catalog)"),
        eta_check(b, dataset, "next copy (sizes and per-unit cost from the first)"),
    ]
    caps = [cap_check(b, dataset, n) for n in (2, 4)]
    b.restart_workers({"PAGILA_REPLACE": "swap"})
    return {"etas": etas, "caps": caps}


def table_text(result: dict[str, Any]) -> str:
    """Both tables, as printed and written to docs/benchmarks.md."""
    pct = lambda v: f"{v * 100:+.0f} %" if v is not None else "-"  # noqa: E731
    lines = [
        "| dataset | run | copy phase s | samples from 20 % | within ±20 % | within ±20 % or "
        "±0.1 s | median error | worst error | worst with ≥ 1 s left |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in result["etas"]:
        lines.append(
            f"| {e['dataset']} | {e['which']} | {e['copy_seconds']:.2f} | {e['samples']} | "
            f"{e['within_20']} | {e['within_tolerance']} | {pct(e['median_error'])} | "
            f"{pct(e['worst_error'])} | {pct(e['worst_error_1s'])} |"
        )
    lines += [
        "",
        "| dataset | worker processes | cap MB/s | MB read | copy phase s | achieved MB/s | "
        "off the cap | run s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in result["caps"]:
        lines.append(
            f"| {c['dataset']} | {c['processes']} | {c['cap'] / 1e6:.0f} | {c['bytes'] / MB:.1f} | "
            f"{c['copy_seconds']:.2f} | {c['rate'] / 1e6:.2f} | {pct(c['off'])} | "
            f"{c['seconds']:.2f} |"
        )
    return "\n".join(lines)
