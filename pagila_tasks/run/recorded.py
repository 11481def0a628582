"""What a run that left the live copy equal to the source records for the next run's proof:
every table's count and checksum on both sides, and from when each holds (pure).

A measure recorded in a snapshot still holds later for a table whose visible rows all carry an
xmin older than that snapshot's xmin, when the table's count is unchanged: every transaction
older than a snapshot's xmin had ended when the snapshot was taken, so a row version visible
now that such a transaction wrote was visible then too, and a set of rows contained in the
recorded one with as many rows is that set (``sql/table_blocks_written.sql``). It holds only on the
same cluster, timeline and database (a restored backup counts transactions anew) and within
:data:`WINDOW` transactions (xids compare modulo 2**32): :class:`Recorded` carries where its
measures were taken. Anything else is measured again, as the proof always did.

A table a refresh wrote in place is recorded as its transaction left it, holding from the xmin
of a snapshot taken once writers were locked out of it, with that transaction's own xid (its
*writer*, :attr:`Side.writers`): the writer's rows are the recorded ones, and any other
transaction that writes the table later had not ended when that snapshot was taken (the lock
kept those that had ended from writing it), so its rows carry an xmin at or past that xmin. A
row the writer wrote in a subtransaction carries another xid: the table is then measured
again, never taken wrongly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

WINDOW = 1 << 30
"""The most transactions between a recorded xmin and now for which it still bounds the rows
written since (xids compare modulo 2**32; far inside it)."""

Measure = tuple[int, str | None]
"""A table's row count and checksum (:func:`pagila_tasks.replication.verify.measure`)."""


@dataclass(frozen=True)
class Side:
    """One side's recorded measures: the cluster they were taken on, and per table its measure
    and the xmin of the snapshot from which it holds (``None``: it does not: measure it)."""

    origin: str | None = None
    """``system identifier:timeline:database oid`` (:func:`.snapshot.origin`), or None."""
    tables: dict[str, tuple[Measure, int | None]] = field(default_factory=dict)
    writers: dict[str, int] = field(default_factory=dict)
    """Per table a refresh wrote in place: that transaction's xid8 (see the module's docstring)."""

    def known(self, origin: str | None, xmax: int) -> dict[str, tuple[Measure, int]]:
        """The measures that may still hold, seen from ``origin`` in a snapshot whose xmax is
        ``xmax``: same origin, a checksum, and a recorded xmin in this counter's recent past."""
        if self.origin is None or origin != self.origin:
            return {}
        return {
            name: (measure, since)
            for name, (measure, since) in self.tables.items()
            if measure[1] is not None and usable(since, xmax)
        }


def usable(since: int | None, xmax: int) -> bool:
    """Whether ``since`` (an xid8) can bound the rows written after it, seen from a snapshot
    whose xmax is ``xmax``: not ahead of it (another counter) and within :data:`WINDOW`."""
    return since is not None and 0 < since <= xmax and xmax - since < WINDOW


def holds(recorded: Measure, rows_now: int, written_since: int) -> bool:
    """A recorded measure still holds when no visible row was written since and the count is
    the recorded one (see the module's docstring)."""
    return written_since == 0 and rows_now == recorded[0]


@dataclass(frozen=True)
class Recorded:
    """Both sides' recorded measures (``replication_fingerprint.measures``)."""

    source: Side = field(default_factory=Side)
    target: Side = field(default_factory=Side)

    def as_json(self) -> str:
        return json.dumps(
            {
                side: {
                    "origin": s.origin,
                    "tables": {n: [m[0], m[1], since] for n, (m, since) in s.tables.items()},
                    "writers": s.writers,
                }
                for side, s in (("source", self.source), ("target", self.target))
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Recorded:
        """The recorded measures, or none (an unreadable record proves nothing)."""
        try:
            data = json.loads(text or "{}")
            return cls(_side(data.get("source")), _side(data.get("target")))
        except (ValueError, TypeError, AttributeError, IndexError):
            return cls()


def _side(data: Any) -> Side:
    if not data:
        return Side()
    tables = {
        str(n): ((int(v[0]), None if v[1] is None else str(v[1])), _xid(v[2]))
        for n, v in data["tables"].items()
    }
    writers = {str(n): int(x) for n, x in (data.get("writers") or {}).items()}
    return Side(data.get("origin"), tables, writers)


def _xid(value: Any) -> int | None:
    return None if value is None else int(value)


def sides(
    checks: list[tuple[str, int, int, str | None, str | None]],
    origins: tuple[str | None, str | None],
    since: tuple[int | None, dict[str, int | None]],
    writers: dict[str, int] | None = None,
) -> Recorded:
    """The record a run leaves from its verdicts (table, source rows, target rows, source and
    target checksums): the source's measures hold from the run snapshot's xmin, each target
    table's from the xmin ``since[1]`` gives it (None: measure it next time), with the
    ``writers`` of the target tables a refresh wrote."""
    source_since, target_since = since
    return Recorded(
        Side(origins[0], {t: ((sr, sc), source_since) for t, sr, _, sc, _ in checks}),
        Side(
            origins[1],
            {t: ((tr, tc), target_since.get(t)) for t, _, tr, _, tc in checks},
            dict(writers or {}),
        ),
    )
