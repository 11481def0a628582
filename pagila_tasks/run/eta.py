"""How far a replication's copies are, in bytes, and when they should end: pure arithmetic on
the run record (no clock but the ``now`` it is given).

Bytes: a unit's size is the expected one (:attr:`ReplicationPlan.expected`) until its read from
the source ends, then the real one. A running unit's done bytes weigh its read (into the spool)
and its write (into the target) by the share of time each took in this run's finished copies
(half and half before one finished), so the count moves with the time spent, not by phase.
Units a resumed run reused are not its work and not counted.

Time: once five copies of different sizes finished, each worker process's time per unit is
fitted as ``seconds = per_byte * bytes + overhead`` (least squares over the finished units, the
overhead taking in the connection, the commit and the wait for the next message), so many small
units left are not mistaken for little time left; what is left, in worker-seconds, over the
worker processes seen copying, is the ETA. Before that, the ETA is the bytes left over the
bytes done per second. Either way the counts are as old as the newest unit update, so the time
since is taken off. Before the fit, each unit not started yet adds the per-unit cost measured
on the last run (:attr:`ReplicationPlan.unit_overhead`, see :func:`unit_overhead`). The ETA is
the copies' end: post-data, verification and the switch follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pagila_tasks.run.model import Run, UnitProgress

FIT_AFTER = 5
"""Finished copies needed before the per-unit cost is fitted."""
FIT_SPREAD = 4.0
"""...and the largest of them this many times the smallest: units of one size cannot tell a
cost per byte from a cost per unit (the largest go first, so the fit waits for small ones)."""


@dataclass(frozen=True)
class Progress:
    """The copies' bytes expected and done, the rate, the ETA and the cap, at one moment."""

    expected_bytes: int = 0
    done_bytes: int = 0
    rate: float | None = None
    eta_seconds: float | None = None
    max_rate: int | None = None
    units_done: int = 0
    units: int = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.expected_bytes) if self.expected_bytes else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"fraction": round(self.fraction, 4)}


@dataclass(frozen=True)
class _Left:
    """One unit's share of the work: its size, its bytes done, whether it is finished."""

    size: int
    done: float
    state: str


def unit_bytes(u: UnitProgress, expected: int, reading: float) -> tuple[int, float]:
    """(size, done) of one unit, ``reading`` the read's share of a copy's time."""
    read, written = int(u.read or 0), int(u.written or 0)
    if u.state == "done":
        size = int(u.bytes or read)
        return size, float(size)
    if u.state != "running":
        return expected, 0.0
    size = read if written else max(expected, read)
    return size, reading * min(size, read) + (1 - reading) * min(size, written)


def reading_share(units: Iterable[UnitProgress]) -> float:
    """The share of the finished copies' time their reads took (0.5 before any finished)."""
    timed = [u for u in units if u.state == "done" and u.seconds and u.read_seconds is not None]
    total = sum(u.seconds for u in timed)
    return sum(float(u.read_seconds or 0) for u in timed) / total if total else 0.5


def worker_costs(units: Iterable[UnitProgress]) -> list[tuple[float, float]]:
    """(bytes, seconds of its worker process) per finished copy: from the end of the process's
    previous unit (or the copy's own start, for its first) to the copy's end."""
    by_process: dict[tuple[str | None, int | None], list[UnitProgress]] = {}
    for u in units:
        if u.state == "done" and u.started_at is not None and u.ended_at is not None:
            by_process.setdefault((u.worker, u.pid), []).append(u)
    costs = []
    for done in by_process.values():
        previous: float | None = None
        for u in sorted(done, key=lambda x: float(x.started_at or 0)):
            began = float(u.started_at or 0) if previous is None else previous
            costs.append((float(u.bytes or 0), max(0.0, float(u.ended_at or 0) - began)))
            previous = float(u.ended_at or 0)
    return costs


def fit(costs: list[tuple[float, float]]) -> tuple[float, float] | None:
    """``(per_byte, overhead)`` with ``seconds = per_byte * bytes + overhead`` by least squares;
    None with fewer than :data:`FIT_AFTER` points, sizes too alike, or no positive per-byte
    cost."""
    n = len(costs)
    sizes = [x for x, _ in costs]
    if n < FIT_AFTER or max(sizes, default=0) < FIT_SPREAD * max(min(sizes, default=0), 1.0):
        return None
    sx = sum(x for x, _ in costs)
    sy = sum(y for _, y in costs)
    sxx = sum(x * x for x, _ in costs)
    sxy = sum(x * y for x, y in costs)
    spread = n * sxx - sx * sx
    if spread <= 0 or sx <= 0:
        return None
    per_byte = (n * sxy - sx * sy) / spread
    overhead = (sy - per_byte * sx) / n
    if overhead < 0:  # no fixed cost to be seen: the time is all bytes
        per_byte, overhead = sy / sx, 0.0
    return (per_byte, overhead) if per_byte > 0 else None


def copied_bytes(run: Run | None) -> dict[str, int]:
    """Per unit, the bytes ``run`` copied (the next run's expected sizes)."""
    return {n: int(u.bytes) for n, u in run.units.items() if u.bytes} if run else {}


def unit_overhead(run: Run | None) -> float:
    """What a copy costs beyond its bytes, measured on ``run``: the intercept of the fit over
    its copies (0.0 when there is no run or no fit)."""
    cost = fit(worker_costs(run.units.values())) if run else None
    return round(cost[1], 4) if cost else 0.0


def _updated(u: UnitProgress) -> float:
    return datetime.fromisoformat(u.updated_at).timestamp() if u.updated_at else 0.0


def progress(run: Run, now: float) -> Progress | None:
    """The copies' progress at ``now`` (epoch seconds); None before prepare decided any."""
    plan = run.plan
    if plan is None or run.kind != "replicate":
        return None
    reading = reading_share(run.units.values())
    left: list[_Left] = []
    as_of = run.copying_at or 0.0
    for unit in plan.units:
        u = run.units.get(unit.name, UnitProgress())
        if u.state == "reused":
            continue
        size, done = unit_bytes(u, plan.expected.get(unit.name, 0), reading)
        left.append(_Left(size, done, u.state))
        if u.state in ("running", "done"):
            as_of = max(as_of, _updated(u))
    size = sum(x.size for x in left)
    done = sum(x.done for x in left)
    finished = sum(x.state == "done" for x in left)
    as_of = min(as_of, now)
    rate = eta = None
    if run.copying_at and done > 0 and as_of > run.copying_at:
        rate = done / (as_of - run.copying_at)
        eta = 0.0 if finished == len(left) else _eta(run, left, rate) - (now - as_of)
        eta = max(0.0, eta)
    return Progress(int(size), int(done), rate, eta, plan.max_rate, finished, len(left))


def _eta(run: Run, left: list[_Left], rate: float) -> float:
    """Seconds of copying left, as of the counts: the fitted cost of what is left over the
    worker processes; before a fit, the bytes left over the rate plus the last run's per-unit
    cost of each unit not started yet (shared over the processes)."""
    processes = max(1, len({(u.worker, u.pid) for u in run.units.values() if u.pid is not None}))
    waiting = sum(x.state not in ("running", "done") for x in left)
    cost = fit(worker_costs(run.units.values()))
    if cost is None:
        overhead = run.plan.unit_overhead if run.plan else 0.0
        return sum(x.size - x.done for x in left) / rate + overhead * waiting / processes
    per_byte, overhead = cost
    work = sum(per_byte * (x.size - x.done) for x in left if x.state != "done")
    return (work + overhead * waiting) / processes
