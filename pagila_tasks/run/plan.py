"""Pure planning: which units of work a run copies, in what order, how large tables split.

No I/O here: the catalog is read elsewhere and handed in, so the rules can be tested alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from pagila_tasks.base import names
from pagila_tasks.base.errors import UsageError

MAX_PARTS = 64
"""A table is split into at most this many ranges by its bytes: past it the units grow, so
that a run's task count (and its record) stays bounded whatever the table's size."""
MAX_ROW_PARTS = 8
"""...and into at most this many by its rows: the row rule spreads a table of many narrow rows
over the workers, for which a few units are enough; the byte rule bounds what one unit holds."""


@dataclass(frozen=True)
class Table:
    """One copyable table (ordinary or leaf partition) as the source catalog describes it."""

    schema: str
    name: str
    estimated_rows: int
    bytes: int
    columns: tuple[str, ...]
    int_key: str | None = None
    text_only: bool = False
    """Some column's type has no binary send/receive: copied in text format."""
    blocks: int = 0
    """Heap blocks (pages) when the catalog was read: a block-range split's span."""
    stored_bytes: int = 0
    """The heap with its TOAST (``pg_table_size``): what the byte rule of a split weighs."""

    @property
    def key(self) -> tuple[str, str]:
        """(schema, name): names stay a pair from the catalog to the last statement."""
        return (self.schema, self.name)

    @property
    def qualified(self) -> str:
        """For people and record keys only (quoted where needed); never parsed back."""
        return names.display(self.schema, self.name)


@dataclass(frozen=True)
class Unit:
    """One ``copy_table`` task: a whole table, or one key range ``[lo, hi)`` of it."""

    schema: str
    table: str
    columns: tuple[str, ...]
    part: int | None = None
    parts: int | None = None
    key: str | None = None
    lo: int | None = None
    hi: int | None = None
    kind: str = "table"
    text_only: bool = False
    by_block: bool = False
    """``[lo, hi)`` are heap block numbers (a ``ctid`` range), not key values."""
    stage: str | None = None
    """A ``changes`` unit's work tables (see :mod:`pagila_tasks.run.changeplan`): it fetches
    the source's rows for the keys that differ, not a range."""

    @property
    def name(self) -> str:
        """For people and record keys: ``schema.table``, ``#2of4`` for a key range."""
        base = self.table_name
        if self.kind == "changes":
            return f"{base} changes"
        return base if self.part is None else f"{base}#{self.part + 1}of{self.parts}"

    @property
    def table_name(self) -> str:
        """The name of what the unit fills, shared by every part of a split table (built from
        the pair, never cut out of :attr:`name`: a table's own name may hold a ``#``)."""
        if self.kind == "large_objects":
            return "large objects"
        return names.display(self.schema, self.table)

    def as_args(self) -> dict[str, Any]:
        """JSON-friendly form carried in the task's arguments (no secrets, no rows)."""
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data

    @classmethod
    def from_args(cls, data: dict[str, Any]) -> Unit:
        return cls(**{**data, "columns": tuple(data["columns"])})


def reused_whole(units: tuple[Unit, ...], reused: set[str]) -> set[str]:
    """The tables every unit of which was reused (none is copied again)."""
    return {u.table_name for u in units} - {u.table_name for u in units if u.name not in reused}


def split_ranges(lo: int, hi: int, parts: int) -> list[tuple[int | None, int | None]]:
    """Cut the key span ``[lo, hi]`` into ``parts`` half-open ranges; the ends stay open."""
    if parts <= 1 or hi <= lo:
        return [(None, None)]
    step = math.ceil((hi - lo + 1) / parts)
    bounds = [lo + i * step for i in range(1, parts)]
    edges: list[int | None] = [None, *bounds, None]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def parts(t: Table, split_rows: int, split_bytes: int = 0, span_rows: int = -1) -> int:
    """How many units ``t`` is copied by: enough that none holds more than ``split_rows``
    estimated rows (``span_rows``, its key span, when never analyzed; at most
    :data:`MAX_ROW_PARTS` units) nor more than ``split_bytes`` of its heap and TOAST (at most
    :data:`MAX_PARTS`), the larger of the two. A rule set to 0 is off."""
    rows = t.estimated_rows if t.estimated_rows >= 0 else span_rows
    by_rows = (
        min(MAX_ROW_PARTS, math.ceil(rows / split_rows)) if split_rows and rows > split_rows else 1
    )
    big = split_bytes and t.stored_bytes > split_bytes
    by_bytes = math.ceil(t.stored_bytes / split_bytes) if big else 1
    return min(MAX_PARTS, max(by_rows, by_bytes))


def plan_units(
    tables: list[Table],
    split_rows: int,
    key_spans: dict[str, tuple[int, int]] | None = None,
    by_block: bool = False,
    split_bytes: int = 0,
) -> list[Unit]:
    """Units for ``tables``, largest first so the longest copies start earliest.

    A table above ``split_rows`` estimated rows or ``split_bytes`` stored becomes several units
    (:func:`parts`): key ranges when it has a single integer primary key (and a span in
    ``key_spans``), else, with ``by_block``, heap block ranges (``ctid``), as pgcopydb does.
    A table never analyzed (estimate -1) is sized by its key span, or by its bytes alone.
    """
    key_spans = key_spans or {}
    units: list[Unit] = []
    for t in sorted(tables, key=lambda t: (-t.bytes, t.schema, t.name)):
        span = key_spans.get(t.qualified)
        whole = Unit(t.schema, t.name, t.columns, text_only=t.text_only)
        if t.int_key and span:
            n = parts(t, split_rows, split_bytes, span[1] - span[0] + 1)
            ranges = split_ranges(span[0], span[1], n)
            units += (
                [
                    replace(whole, part=i, parts=len(ranges), key=t.int_key, lo=lo, hi=hi)
                    for i, (lo, hi) in enumerate(ranges)
                ]
                if len(ranges) > 1
                else [whole]
            )
        elif (
            by_block
            and t.blocks > 1
            and (n := min(parts(t, split_rows, split_bytes), t.blocks)) > 1
        ):
            ranges = split_ranges(0, t.blocks - 1, n)
            units += [
                replace(whole, part=i, parts=len(ranges), key="ctid", lo=lo, hi=hi, by_block=True)
                for i, (lo, hi) in enumerate(ranges)
            ]
        else:
            units.append(whole)
    return units


COPY_PER_HEAP_BYTE = 0.8
"""A table's binary COPY stream per byte of its heap (no tuple headers or padding; measured
0.7-0.9 on Pagila): a first run's expected bytes, before any run measured them."""


def expected_bytes(units: list[Unit], tables: list[Table], last: dict[str, int]) -> dict[str, int]:
    """Per unit, the bytes its copy is expected to move: what the last run moved for the same
    unit, else its share of the table's size in the catalog (the progress bar's total)."""
    sizes = {names.display(t.schema, t.name): t.bytes for t in tables}
    out = {}
    for u in units:
        if u.name in last:
            out[u.name] = last[u.name]
        else:
            share = sizes.get(u.table_name, 0) / (u.parts or 1)
            out[u.name] = int(share * COPY_PER_HEAP_BYTE)
    return out


def tables_to_split(tables: list[Table], split_rows: int, split_bytes: int = 0) -> list[Table]:
    """The tables whose key span the catalog must fetch before :func:`plan_units`: those with
    an integer key that a rule may split (never analyzed: its span decides)."""
    return [
        t
        for t in tables
        if t.int_key
        and ((split_rows and t.estimated_rows < 0) or parts(t, split_rows, split_bytes) > 1)
    ]


def parse_table_list(raw: str | None) -> list[str] | None:
    """``--tables a,b`` as a list of items (each ``[schema.]table``, quotes as in
    :mod:`pagila_tasks.base.names`); None means every table. An empty item is refused."""
    if raw is None:
        return None
    pairs = names.parse_qualified_list(raw, "--tables")
    return [
        names.quote(name) if schema is None else names.display(schema, name)
        for schema, name in pairs
    ]


def resolve_selection(
    requested: list[str],
    schemas: tuple[str, ...],
    kinds: dict[tuple[str, str], str],
    leaves: dict[tuple[str, str], list[tuple[str, str]]],
) -> list[tuple[str, str]]:
    """Map requested names to copyable tables, refusing anything that is not a plain table.

    ``kinds`` maps (schema, name) to pg_class.relkind; a partitioned table ('p') stands for its
    leaves (given in ``leaves``). A bare name is looked up in ``schemas`` in order.
    """
    chosen: list[tuple[str, str]] = []
    for raw in requested:
        [(schema, name)] = names.parse_qualified_list(raw, "--tables")
        if schema is not None:
            candidates = [(schema, name)] if schema in schemas else []
        else:
            candidates = [(s, name) for s in schemas]
        found = [c for c in candidates if c in kinds]
        if not found:
            shown = ", ".join(names.quote(s) for s in schemas)
            raise UsageError(f"unknown table {names.printable(raw)!r} in schemas {shown}")
        key = found[0]
        kind = kinds[key]
        if kind == "r":
            chosen.append(key)
        elif kind == "p":
            chosen.extend(leaves.get(key, []))
        else:
            what = {
                "v": "a view",
                "m": "a materialized view",
                "S": "a sequence",
                "f": "a foreign table",
                "i": "an index",
                "I": "an index",
                "c": "a type",
            }
            shown = names.printable(raw)
            raise UsageError(f"{shown!r} is {what.get(kind, 'not a table')}, not a plain table")
    return list(dict.fromkeys(chosen))
