"""Flower in a real browser: headless Chromium logs in and sees the run's copies, by name, on
/tasks."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from urllib.parse import quote

import pytest

from tests.flower_support import (
    SPLIT_ROWS,
    Flower,
    control_names,
    running_flower,
    shown_name,
    submit_run,
)
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = ROOT / "artifacts"
UNITS = 21  # 14 tables + 7 payment partitions, before any key range
PAGE = 15  # rows on the first page of Flower's Tasks page
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


def run_chromium(url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Headless Chromium once on ``url`` with a throwaway profile; it must exit 0."""
    profile = tempfile.mkdtemp(prefix="pagila-chromium-")
    try:
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def browse(flower: Flower, path: str, *mode: str, auth: bool = True, timeout: float = 90) -> str:
    """Run headless Chromium once on ``path`` (logged in through the URL), return its stdout."""
    login = f"{flower.user}:{flower.password}@" if auth else ""
    return run_chromium(
        f"http://{login}127.0.0.1:{flower.port}{path}", *mode, timeout=timeout
    ).stdout


def table_rows(dom: str) -> dict[str, str]:
    """The task rows of Flower's tasks table in a dumped DOM: task id -> the row's HTML."""
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in dom else ""
    return dict(re.findall(r'<tr id="([0-9a-f-]{36})"[^>]*>(.*?)</tr>', body, re.S))


def test_flower_tasks_page_names_the_copies_in_a_browser(servers, isolated) -> None:
    """After a run that copies public.rental in key ranges, a browser logged in to Flower sees
    rows named for what they do (``copy public.rental #1of5``, ``finish replication RUN``) on
    the Tasks page, and exactly the rental ranges when the page is filtered by that name."""
    chromium()
    iso = isolated(SPLIT_ROWS)
    iso.pool(2, prefix="fl")
    with running_flower(("fl1", "fl2"), env=iso.env) as flower:
        load_id, run_id = submit_run(iso)
        code, status = iso.submit_json("status", run_id)
        assert code == 0, status
        expected = {shown_name(key, u) for key, u in status["units"].items()}
        rental = {n for n in expected if n.startswith("copy public.rental #")}
        assert len(rental) >= 2, sorted(expected)
        control = control_names(load_id, run_id)

        tasks = flower.wait_succeeded({*expected, *control})
        names = {i: t["name"] for i, t in tasks.items() if t.get("state") == "SUCCESS"}
        assert len(names) >= UNITS + len(control), names

        anonymous = browse(flower, "/tasks", "--virtual-time-budget=5000", "--dump-dom", auth=False)
        assert "copy public." not in anonymous and not table_rows(anonymous)

        dom = browse(flower, "/tasks", "--virtual-time-budget=10000", "--dump-dom")
        rows = table_rows(dom)  # filled by the page's own XHR to /tasks/datatable
        assert len(rows) == PAGE and set(rows) <= set(names), (set(rows) - set(names), dom[-5000:])
        for task_id, html in rows.items():  # each row says what it does, and it succeeded
            assert f">{names[task_id]}<" in html and ">SUCCESS<" in html, html
        copies = [i for i in rows if names[i] in expected]
        assert len(copies) >= PAGE - len(control), [names[i] for i in rows]
        assert "pagila.copy_table" not in dom
        total = re.search(r"of (\d+) tasks", dom)
        assert total and int(total.group(1)) == len(names), dom[-3000:]

        # Filtered by name as a link of Flower's or a person would: /tasks?name="copy public.rental"
        rental_page = "/tasks?name=" + quote('"copy public.rental"')
        dom = browse(flower, rental_page, "--virtual-time-budget=10000", "--dump-dom")
        rows = table_rows(dom)
        assert sorted(names.get(i, i) for i in rows) == sorted(rental), dom[-5000:]
        for html in rows.values():
            assert ">SUCCESS<" in html and re.search(r">fl[12]@", html), html

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "flower-tasks.png"
        shot.unlink(missing_ok=True)
        browse(
            flower,
            rental_page,
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            f"--screenshot={shot}",
        )
        assert shot.is_file() and shot.stat().st_size > 20_000, shot
