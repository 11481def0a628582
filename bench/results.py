"""What one run of a method yields, and why a run has no result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.measuring import Measured


class NotAvailable(Exception):
    """The method cannot run here; the message says why (printed as n/a)."""


class RunFailed(Exception):
    """The method ran but failed or copied wrong row counts."""


@dataclass(frozen=True)
class Outcome:
    """What a method function returns: its measured command, bytes written to disk, extras."""

    run: Measured
    spilled: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """One run of one method on one dataset, as the report reads it."""

    method: str
    dataset: str
    seconds: float
    peak_rss: int
    peak_proc: str
    spilled: int
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, method: str, dataset: str, outcome: Outcome) -> Result:
        """The result of ``outcome``, with the peak of every kind of process in ``detail``."""
        run = outcome.run
        return cls(
            method,
            dataset,
            run.seconds,
            run.peak_rss,
            run.peak_proc,
            outcome.spilled,
            {**outcome.detail, "peaks": run.peaks},
        )


@dataclass
class Tally:
    """Every result and every failure of a benchmark, per (method, dataset)."""

    results: list[Result] = field(default_factory=list)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    """What :func:`bench.data.scale` (or :func:`bench.wide.make`) says of each dataset, in
    order."""

    def names(self) -> list[str]:
        """The datasets' names (``x1``, ``x50``; the wide one's own, ``wide-2GB``), in order."""
        return [dataset_name(d) for d in self.datasets]

    def sizes(self) -> dict[str, int]:
        """Each dataset's bytes of tables and indexes by name: what seconds per GB divide."""
        return {dataset_name(d): int(d["bytes"]) for d in self.datasets}


def dataset_name(d: dict[str, Any]) -> str:
    """A dataset's name: its own, else ``x<scale>``."""
    return str(d.get("name") or f"x{d['scale']}")
