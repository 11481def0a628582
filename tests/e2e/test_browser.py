"""Flower in a real browser: headless Chromium logs in and sees the run's copies on /tasks."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from tests.flower_support import Flower, running_flower
from tests.support import ROOT, submit_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = ROOT / "artifacts"
UNITS = 21
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The Chromium binary, or a skip naming what to install."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")


def browse(flower: Flower, path: str, *mode: str, auth: bool = True, timeout: float = 90) -> str:
    """Run headless Chromium once on ``path`` (logged in through the URL), return its stdout."""
    login = f"{flower.user}:{flower.password}@" if auth else ""
    url = f"http://{login}127.0.0.1:{flower.port}{path}"
    profile = tempfile.mkdtemp(prefix="pagila-chromium-")
    try:
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def table_rows(dom: str) -> dict[str, str]:
    """The task rows of Flower's tasks table in a dumped DOM: task id -> the row's HTML."""
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in dom else ""
    return dict(re.findall(r'<tr id="([0-9a-f-]{36})"[^>]*>(.*?)</tr>', body, re.S))


def test_flower_tasks_page_shows_the_copies_in_a_browser(workers: list[int], servers) -> None:
    """After a run, a browser logged in to Flower sees the run's copy_table rows as SUCCESS."""
    chromium()
    with running_flower(("w1", "w2")) as flower:
        code, out = submit_json("run")
        assert code == 0, out
        run_id = out["run_id"]

        def copies() -> set[str]:
            tasks = flower.get_json("/api/tasks?taskname=pagila.copy_table")
            ids = {i for i, t in tasks.items() if run_id in str(t.get("args"))}
            return ids if len(ids) == UNITS else set()

        copy_ids = wait_for(copies, 60, "flower to know the 21 copies", interval=1)

        anonymous = browse(flower, "/tasks", "--virtual-time-budget=5000", "--dump-dom", auth=False)
        assert "pagila.copy_table" not in anonymous and not table_rows(anonymous)

        dom = browse(flower, "/tasks", "--virtual-time-budget=10000", "--dump-dom")
        rows = table_rows(dom)  # filled by the page's own XHR to /tasks/datatable
        shown = {i: html for i, html in rows.items() if "pagila.copy_table" in html}
        assert len(shown) >= 10, dom[-5000:]  # the first page holds 15 of the 24 tasks
        assert set(shown) <= copy_ids, (set(shown) - copy_ids, copy_ids)
        for html in shown.values():
            assert ">SUCCESS<" in html, html
            assert re.search(r">w[12]@", html), html
        assert (
            re.search(r"of (\d+) tasks", dom)
            and int(re.search(r"of (\d+) tasks", dom).group(1)) >= UNITS + 2
        )  # load, replicate and finish_replication beside the copies

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "flower-tasks.png"
        shot.unlink(missing_ok=True)
        browse(
            flower,
            "/tasks",
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            f"--screenshot={shot}",
        )
        assert shot.is_file() and shot.stat().st_size > 20_000, shot
