"""The run report in a real browser: a replication, ``pagila-submit report --html``, and headless
Chromium, with no network, drawing one lane per worker process and one bar per unit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_browser import chromium, run_chromium
from tests.support import ROOT, submit, submit_json

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = ROOT / "artifacts"
DOCS_IMAGE = ROOT / "docs" / "images" / "report.png"
UNITS = 21  # 14 tables + 7 payment partitions
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0")
"""Every host name fails to resolve: the page draws from what it holds, or not at all."""
CONSOLE = re.compile(r':CONSOLE[:(]?\d*\)?\] "(.*)", source: (\S+)')


def open_page(page: Path, *mode: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Headless Chromium once on the file, offline, its console on stderr."""
    return run_chromium(
        page.as_uri(), *OFFLINE, "--virtual-time-budget=5000", *mode, timeout=timeout
    )


def between(dom: str, start: str, end: str) -> str:
    """The part of a dumped DOM from ``start`` to ``end`` (one figure's div)."""
    assert start in dom, dom[:2000]
    rest = dom.split(start, 1)[1]
    return rest.split(end, 1)[0]


def test_report_page_draws_every_unit_on_its_worker_process(
    workers: list[int], servers, tmp_path: Path
) -> None:
    """After a full replication the report page, opened offline in Chromium, draws one y-axis
    lane per worker process that ran a unit (and the control tasks'), one bar per copy and per
    step, logs nothing to the console; the text form names the same lanes; a run Redis does
    not know exits 2."""
    chromium()
    code, out = submit_json("run", "--full")
    assert code == 0 and out["state"] == "succeeded", out
    run_id = out["run_id"]
    code, status = submit_json("status", run_id)
    assert code == 0, status
    units = status["units"]
    assert len(units) == UNITS and all(u.get("started_at") for u in units.values()), units
    lane_of = {name: f"{u['worker']} pid {u['pid']}" for name, u in units.items()}
    assert len(set(lane_of.values())) >= 2, lane_of  # both workers copied

    unknown = submit("report", "replicate-nope", "--html", str(tmp_path / "nope.html"))
    assert unknown.returncode == 2 and "no run 'replicate-nope' in Redis" in unknown.stderr
    assert not (tmp_path / "nope.html").exists()

    text = submit("report", run_id)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"run {run_id} (replicate) started: source "), text.stdout
    for lane in set(lane_of.values()):
        assert re.search(rf"^{re.escape(lane)}\s", text.stdout, re.M), (lane, text.stdout)

    page = tmp_path / "report.html"
    proc = submit("report", run_id, "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", html)
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html)
    assert found, html[-3000:]
    data = json.loads(found.group(1))
    copies = {b["id"]: b for b in data["bars"] if b["kind"] == "copy"}
    assert {name: b["lane"] for name, b in copies.items()} == lane_of
    assert all(b["outcome"] == "done" and b["end"] >= b["start"] for b in copies.values())
    steps = [b["label"] for b in data["bars"] if b["kind"] == "step"]
    for said in ("prepare: export snapshot", "finish: post-data", "switch: switched"):
        assert any(s.startswith(said) for s in steps), (said, steps)
    assert set(lane_of.values()) <= set(data["lanes"])

    browsed = open_page(page, "--dump-dom")
    timeline = between(browsed.stdout, 'id="timeline"', 'id="history"')
    ticks = re.findall(r'<g class="ytick"><text[^>]*data-unformatted="([^"]*)"', timeline)
    assert sorted(ticks) == sorted(data["lanes"]), (ticks, data["lanes"])
    assert timeline.count('<g class="point">') == len(data["bars"]) == UNITS + len(steps)
    assert timeline.count('<g class="trace bars"') >= 2
    history = between(browsed.stdout, 'id="history"', 'id="report-data"')
    assert history.count('<g class="point">') >= 2  # duration and bytes of this run
    said = CONSOLE.findall(browsed.stderr)
    assert not said and "Uncaught" not in browsed.stderr, said

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    open_page(page, "--window-size=1400,1000", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000, shot
    if os.environ.get("PAGILA_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
