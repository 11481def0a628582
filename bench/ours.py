"""This project's replication under measurement: ``pagila-submit replicate`` and what it leaves.

The command only submits; the work runs in the workers, so memory is sampled over the workers'
process trees, and the time breakdown comes from their logs' STEP lines and the run record.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from bench.measuring import Measured, last_line, run_measured
from bench.results import RunFailed
from bench.stack import BenchStack

AUDIT_FINISHED = """
SELECT extract(epoch FROM finished_at) FROM pagila_support.replication_audit WHERE run_id = %s
"""
KEEP_STEP = re.compile(r"^STEP finish RUN: keep (\d+) objects")
"""The finish step naming how many objects of the target's users the run keeps."""
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/([^\]]+)\] (.*)$")
"""A Celery worker log line: time, process, message."""


def replicate(b: BenchStack, what: str, *options: str) -> tuple[Measured, dict[str, Any]]:
    """``pagila-submit replicate --json`` sampled over the workers; the measure and run record.

    Raises RunFailed (its message opens with ``what``) unless the run succeeded.
    """
    run = run_measured(
        [*b.submit_argv(), "replicate", *options, "--json"], b.env, roots=b.worker_roots
    )
    try:
        record = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RunFailed(
            f"{what}: no JSON from pagila-submit (rc {run.rc}): {last_line(run.stderr)}"
        ) from None
    if run.rc != 0 or record.get("state") != "succeeded":
        raise RunFailed(f"{what}: {record.get('state')}: {record.get('error')}")
    return run, record


def lock_to_audit(b: BenchStack, record: dict[str, Any]) -> float:
    """Seconds from the run's lock (its record is created right after) to its audit row."""
    with b.cursor("target") as cur:
        cur.execute(AUDIT_FINISHED, (record["run_id"],))
        (finished,) = cur.fetchone()
    submitted = datetime.fromisoformat(record["submitted_at"]).timestamp()
    return round(float(finished) - submitted, 3)


def step_lines(b: BenchStack, run_id: str, t0: float) -> list[dict[str, Any]]:
    """STEP and 'copied' lines of the workers' logs for ``run_id``, seconds from ``t0``."""
    found = []
    for i, log in enumerate(b.worker_logs(), start=1):
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").splitlines():
            m = LOG_LINE.match(line)
            if not m:
                continue
            msg = m.group(3)
            if not ((msg.startswith("STEP ") and run_id in msg) or msg.startswith("copied ")):
                continue
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at < t0 - 1:
                continue
            found.append(
                {"t": round(at - t0, 3), "worker": f"w{i}", "msg": msg.replace(run_id, "RUN")}
            )
    return sorted(found, key=lambda s: s["t"])


def units(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each unit's rows, bytes, spill, seconds and worker, from the run record."""
    return {
        name: {k: u.get(k) for k in ("rows", "bytes", "spilled", "seconds", "worker")}
        for name, u in record.get("units", {}).items()
    }


def spilled_bytes(record: dict[str, Any]) -> int:
    """Bytes of the units whose spool spilled to disk."""
    return sum(int(u.get("bytes", 0)) for u in record.get("units", {}).values() if u.get("spilled"))


def kept_by_run(steps: list[dict[str, Any]]) -> int | None:
    """How many objects the run said it keeps (its ``keep N objects`` STEP line), if it said."""
    for s in steps:
        m = KEEP_STEP.match(s["msg"])
        if m:
            return int(m.group(1))
    return None
