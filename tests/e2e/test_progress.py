"""Seeing and steering a run: byte progress advancing while a unit copies, the ETA in
``status --json``, and a cap on the source reads shared by every worker of the run."""

from __future__ import annotations

import io
import os
import shutil
import time

import pytest
from rich.console import Console

from pagila_tasks.cli import render
from pagila_tasks.config import parse_rate
from pagila_tasks.run import eta
from pagila_tasks.run.model import Run
from pagila_tasks.run.record import RunRecord
from tests.e2e.test_swap import scale
from tests.support import ROOT, assert_replica, wait_for

ARTIFACTS = ROOT / "artifacts"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAP = "4MB/s"


def picture(run: Run | None) -> None:
    """The terminal progress view of ``run`` as an SVG (a CI artifact; with
    ``PAGILA_UPDATE_DOCS_IMAGES=1`` also README's picture)."""
    assert run is not None
    console = Console(record=True, width=110, file=io.StringIO(), force_terminal=True)
    console.print(render.screen(run, eta.progress(run, time.time())))
    drawn = console.export_text(clear=False)
    assert "copies end in" in drawn and "cap 4.0 MB/s" in drawn, drawn
    ARTIFACTS.mkdir(exist_ok=True)
    svg = ARTIFACTS / "progress.svg"
    console.save_svg(str(svg), title="pagila-submit replicate --max-rate 4MB/s")
    assert svg.stat().st_size > 5000
    if os.environ.get("PAGILA_UPDATE_DOCS_IMAGES") == "1":
        shutil.copyfile(svg, ROOT / "docs/images/progress.svg")


def test_progress_advances_and_the_cap_holds_across_workers(servers, isolated) -> None:
    """During a scaled run capped at 4 MB/s on two workers: rental's bytes and rows advance
    while it copies (three or more distinct counts seen), ``status --json`` gives expected and
    done bytes with an ETA, and the run's whole read rate stays within 10 % of the cap (a
    per-worker cap would let two workers read twice as fast)."""
    iso = isolated({"PAGILA_PROGRESS_INTERVAL": "0.2"})
    iso.pool(2, prefix="p")
    assert iso.submit("load").returncode == 0
    scale(servers.source_dsn, 10)
    run_id = iso.start("replicate", full=True, max_rate=parse_rate(CAP))

    seen: set[tuple[int, int]] = set()

    def rental_done() -> bool:
        unit = iso.record(run_id).get("units", {}).get("public.rental", {})
        if unit.get("state") == "running":
            seen.add((unit.get("read") or 0, unit.get("rows") or 0))
        return unit.get("state") == "done"

    wait_for(lambda: iso.record(run_id).get("units", {}).get("public.rental"), 60, "rental")
    code, status = iso.submit_json("status", run_id)
    assert code == 0, status
    progress = status["progress"]
    assert progress["expected_bytes"] > 10_000_000, progress
    assert progress["max_rate"] == 4_000_000, progress
    wait_for(rental_done, 120, "rental's copy to end", interval=0.05)
    reads = sorted({read for read, _ in seen if read})
    rows = sorted({r for _, r in seen if r})
    assert len(reads) >= 3, seen
    assert len(rows) >= 2, seen  # the source server's own count, read while it sends

    picture(RunRecord(iso.redis).get(run_id))

    def timed() -> dict | None:
        code, status = iso.submit_json("status", run_id)
        assert code == 0, status
        return status if status["progress"].get("eta_seconds") is not None else None

    status = wait_for(timed, 60, "an ETA in status --json")
    progress = status["progress"]
    assert 0 < progress["done_bytes"] <= progress["expected_bytes"], progress
    assert progress["rate"] > 0 and progress["eta_seconds"] >= 0, progress
    assert 0 < progress["fraction"] <= 1 and progress["units"] == len(status["units"]), progress

    run = iso.wait_done(run_id, timeout=300)
    assert run["state"] == "succeeded", run.get("error")
    units = [u for u in run["units"].values() if u.get("started_at")]
    assert len({(u["worker"], u["pid"]) for u in units}) >= 2, units
    first = min(u["started_at"] for u in units)
    last = max(u["ended_at"] for u in units)
    copied = sum(u["bytes"] for u in units)
    rate = copied / (last - first)
    assert copied > 20_000_000, copied
    assert rate <= 1.10 * 4_000_000, f"{rate / 1e6:.2f} MB/s over {last - first:.1f} s"
    assert rate >= 0.5 * 4_000_000, f"{rate / 1e6:.2f} MB/s: the cap starves the run"
    overlapping = any(
        a["pid"] != b["pid"] and a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]
        for a in units
        for b in units
    )
    assert overlapping, "the two workers never copied at the same time"
    assert_replica(servers.source_dsn, servers.target_dsn)
