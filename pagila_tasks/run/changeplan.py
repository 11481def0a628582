"""Pure: whether a run may apply the source's changes to the live copy in place, and how.

A refresh whose schemas are proven equal (:mod:`pagila_tasks.replication.proof`) but whose rows
differ does not build a new copy: each differing table's rows are compared by key and row hash
on both sides (:mod:`pagila_tasks.replication.changes`), the source's rows for the keys that
differ are fetched, and one transaction on the target updates, inserts and deletes them,
measures every table it wrote (or that a foreign-key action could have written) against the
source's count and checksum at the snapshot, and commits only when all agree. The rules for when
that is allowed, and in what order tables are written, are here, apart from any I/O.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from pagila_tasks.base import names

MAX_SHARE = 0.10
"""A table where more than this share of rows differ is not changed in place: the run makes a
full copy. Measured at Pagila x50 (docs/benchmarks.md, "Refresh and resume"): a quarter of
``rental`` applied in place cost more than a whole new copy, about 24 µs per row written
through the live table's indexes, so past a tenth of a table the full copy is the cheaper."""

Ref = tuple[str, str]
"""(schema, name) of a plain table or of a partition tree's root."""


@dataclass(frozen=True)
class RowKey:
    """What the target's catalog says of one table (``sql/changes_keys.sql``)."""

    schema: str
    table: str
    columns: tuple[str, ...] | None
    types: tuple[str, ...] | None
    always_identity: tuple[str, ...] = ()
    has_rules: bool = False
    forced_rls: bool = False
    root: Ref = ("", "")


@dataclass(frozen=True)
class Change:
    """One table whose rows differ, and what its comparison found."""

    schema: str
    table: str
    stage: str
    """Its work tables' suffix in the run's work schema (``k_``, ``f_``, ``g_``, ``r_``)."""
    key: tuple[str, ...]
    key_types: tuple[str, ...]
    columns: tuple[str, ...]
    """The columns copied (generated ones are computed by the target)."""
    settable: tuple[str, ...]
    """The columns an UPDATE sets: neither key nor identity GENERATED ALWAYS."""
    by_text: bool = False
    """Rows are hashed by their text form (as verification does for this table)."""
    text_only: bool = False
    root: Ref = ("", "")
    fetch: int = 0
    """Source rows the live table lacks or holds otherwise: fetched, then updated or inserted."""
    gone: int = 0
    """Live rows whose key the source no longer has: deleted."""
    net: int = 0
    """What the writes add to the live table's checksum: the fetched rows' hashes, less those
    of the live rows they replace and of the rows deleted (the apply's proof)."""
    since: bool = False
    """Found from the rows the source wrote since the live copy was last proven equal (else
    key by key); their rows were read with them (no fetch unit)."""
    new: int = -1
    """Of the rows to fetch, those whose key the live table lacked when compared (inserted by
    the apply; the rest update live rows); -1: not counted. The apply skips a statement that
    would find nothing to write: the live table is shown unwritten since the comparison, or
    measured whole and held to the source's count and checksum, as every written table is."""

    @property
    def name(self) -> str:
        return names.display(self.schema, self.table)

    @property
    def ref(self) -> Ref:
        return (self.schema, self.table)

    def as_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Change:
        tuples = ("key", "key_types", "columns", "settable", "root")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})  # type: ignore[arg-type]


def refusal(key: RowKey | None, table: str = "") -> str | None:
    """Why a table's changes cannot be applied in place, or None when they can."""
    if key is None:
        return f"{table} is not on the target"
    shown = names.display(key.schema, key.table)
    if not key.columns:
        return f"{shown} has no primary key or unique NOT NULL key to match rows by"
    if key.has_rules:
        return f"{shown} has rules that rewrite its writes"
    if key.forced_rls:
        return f"{shown} forces row security on its owner"
    return None


def too_many(change: Change, source_rows: int, target_rows: int, max_share: float) -> str | None:
    """Why a table changed too much to be changed in place (see :data:`MAX_SHARE`)."""
    rows = max(source_rows, target_rows, 1)
    share = (change.fetch + change.gone) / rows
    if share > max_share:
        return (
            f"{change.name}: {change.fetch + change.gone} of {rows} rows differ "
            f"({share:.0%} > {max_share:.0%}): a full copy is cheaper"
        )
    return None


@dataclass(frozen=True)
class Reference:
    """A foreign key between two roots (``sql/changes_references.sql``): its actions (``a``
    no action, ``r`` restrict, else one that writes the child) and the columns it references."""

    child: Ref
    parent: Ref
    on_delete: str = "a"
    on_update: str = "a"
    referenced: tuple[str, ...] = ()


def parents_first(changes: list[Change], references: list[Reference]) -> list[Change]:
    """``changes`` ordered so that a table comes after every table it references (its new rows
    can then be referenced); a cycle keeps the given order for the tables in it."""
    roots = {c.root for c in changes}
    graph: dict[Ref, set[Ref]] = {r: set() for r in roots}
    for ref in references:
        if ref.child in roots and ref.parent in roots and ref.child != ref.parent:
            graph[ref.child].add(ref.parent)
    try:
        rank = {r: i for i, r in enumerate(graphlib.TopologicalSorter(graph).static_order())}
    except graphlib.CycleError:
        return list(changes)
    return sorted(changes, key=lambda c: rank[c.root])


def touched(changes: list[Change], references: list[Reference]) -> set[Ref]:
    """The roots a foreign key's action could write while ``changes`` are applied (to be
    measured again whole, beside the changed tables): ON DELETE where rows are deleted, ON
    UPDATE where a referenced column is not the row key (the key is never updated: rows are
    matched by it). A root written by an action may be written any way, so every action on its
    own children counts. A changed root is in the set only when an action reaches it too."""
    keys = {c.root: set(c.key) for c in changes}
    deletes = {c.root for c in changes if c.gone}
    updates = {c.root for c in changes if c.fetch}
    acted: set[Ref] = set()
    grew = True
    while grew:
        grew = False
        for ref in references:
            if ref.child in acted or not (ref.parent in keys or ref.parent in acted):
                continue
            any_way = ref.parent in acted
            by_delete = (any_way or ref.parent in deletes) and ref.on_delete not in "ar"
            by_update = (
                (any_way or ref.parent in updates)
                and ref.on_update not in "ar"
                and (any_way or not set(ref.referenced) <= keys[ref.parent])
            )
            if by_delete or by_update:
                acted.add(ref.child)
                grew = True
    return acted


def after(
    change: Change, target_rows: int, target_checksum: str | None, inserted: int, deleted: int
) -> tuple[int, str | None]:
    """The changed table's count and checksum after the apply, from the live table's at the
    proof and what the comparison found: rows the apply wrote are proven by their hashes
    inside its transaction, the rest were proven equal by the comparison."""
    if target_checksum is None or ":" not in target_checksum:
        return target_rows + inserted - deleted, None
    method, value = target_checksum.split(":", 1)
    return target_rows + inserted - deleted, f"{method}:{int(value) + change.net}"


def buckets(deleting: int) -> int:
    """How many buckets (a power of two) a table's keys are hashed into to find ``deleting``
    deleted keys: about sixteen per deleted key, so that the buckets holding one, whose keys are
    sent, hold a sixteenth of the table or less; 64 to 65,536."""
    return 1 << max(6, min(16, (max(deleting, 1) * 16 - 1).bit_length()))


INTEGER_KEYS = ("smallint", "integer", "bigint")
"""Key types whose values are bucketed by range (:func:`range_shift`) rather than by hash."""


TEMPORAL = re.compile(r"date|timestamp(\(\d+\))? with(out)? time zone")
"""The date and timestamp types, as ``format_type`` names them (not arrays of them)."""


def range_kind(key_types: tuple[str, ...]) -> str | None:
    """How deleted keys may be looked for by ranges of the key's leading column rather than by
    hashed buckets (cheaper per row, and a range's rows lie together): ``integer`` (``key >>
    shift``), ``temporal`` (a date or timestamp, by ``date_bin``) or None (hashed). Whether the
    ranges spread the rows is then told by counting them (:func:`bunched`)."""
    first = key_types[0] if key_types else ""
    if first in INTEGER_KEYS:
        return "integer"
    if TEMPORAL.fullmatch(first):
        return "temporal"
    return None


def bunched(counts: dict[Any, int], wanted: int) -> bool:
    """Whether ranges cut over the live span put too many rows together (few values of a
    longer key's leading column, keys clustered at the ends of the span): the fullest holds
    more than eight times an even share and more than 64 rows. Its keys would all be sent when
    it lost one, so the buckets are hashed instead: one more count, never a wrong answer."""
    rows = sum(counts.values())
    return max(counts.values(), default=0) > max(64, 8 * rows / max(wanted, 1))


@dataclass(frozen=True)
class Ranges:
    """How a key's leading column was cut into buckets: ``key >> shift`` for an integer;
    ``date_bin(stride, key, origin)`` for a date or timestamp (each bucket named by the start of
    its bin, ``stride`` microseconds long from ``origin``, the live span's first value)."""

    kind: str
    shift: int = 0
    stride: timedelta = timedelta(0)


MOST_RANGES = 256
"""Above this many runs of chosen buckets, their rows are found by reading the whole table (an
OR of that many index ranges plans worse than one scan)."""

INT8 = (-(2**63), 2**63 - 1)


def key_bounds(r: Ranges, chosen: list[Any]) -> list[tuple[Any, Any]] | None:
    """Bounds of the leading column that hold every row of the ``chosen`` buckets (adjacent
    buckets joined), for reading them by the key's index instead of the whole table; None when
    there are more than :data:`MOST_RANGES`. An integer's are inclusive (within bigint); a
    date's or timestamp's run from a bin's start (inclusive) to the end of the last bin of the
    run (exclusive): exact, as the bins are."""
    step = 1 if r.kind == "integer" else r.stride
    runs: list[list[Any]] = []
    for b in sorted(set(chosen)):
        if runs and b == runs[-1][1] + step:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    if len(runs) > MOST_RANGES:
        return None
    if r.kind == "integer":
        return [
            (max(first << r.shift, INT8[0]), min(((last + 1) << r.shift) - 1, INT8[1]))
            for first, last in runs
        ]
    return [(first, last + r.stride) for first, last in runs]


BINNED = (date(1, 1, 2), date(9999, 12, 30))
"""The dates a date or timestamp key is binned between (others are in a bucket of their own):
Python's dates, which the bins are read as, a day inside them for any UTC offset, and well
within ``date_bin``'s 64-bit arithmetic (a date past 294276 AD does not even cast to a
timestamp)."""


def lowest_binned(origin: datetime, stride: timedelta) -> datetime:
    """The earliest value put in a bin from ``origin`` (a later one's bin may start up to a
    ``stride`` before it): the live span's values all are, and any whose bin starts on or
    after the first of :data:`BINNED`."""
    earliest = datetime.combine(BINNED[0], time(), tzinfo=origin.tzinfo)
    return min(origin, earliest + stride)


def bin_stride(lowest: datetime, highest: datetime, wanted: int) -> timedelta:
    """The length (whole microseconds, at least one) of each of about ``wanted`` bins that cut a
    date's or timestamp's live span (``lowest`` to ``highest``) from ``lowest`` on: values
    outside the span (new ones) fall in bins of their own."""
    span = (highest - lowest) // timedelta(microseconds=1)
    return timedelta(microseconds=max(1, -(-(span + 1) // max(wanted, 1))))


def range_shift(lowest: int, highest: int, wanted: int) -> int:
    """The right shift that cuts an integer key's span (``lowest`` to ``highest``, the live
    table's) into about ``wanted`` ranges of equal width, a power of two: ``key >> shift`` is
    then a bucket that costs no hashing, and the rows of a range lie together. Keys outside the
    span (new ones) fall in ranges of their own; keys bunched in few ranges only cost more keys
    sent (at worst every key), never a wrong answer (the checksums confirm it)."""
    span = max(highest - lowest, 0) + 1
    return max(0, ((span - 1) // max(wanted, 1)).bit_length())


def deleted_in(source: dict[Any, int], live: dict[Any, int], inserted: dict[Any, int]) -> list[Any]:
    """The buckets that hold keys the source deleted: per bucket, the live table's rows less the
    source's, plus the source's new rows (which the live table lacks), is what was deleted."""
    return sorted(b for b, n in live.items() if n - source.get(b, 0) + inserted.get(b, 0) > 0)


def confirms(
    change: Change, source: tuple[int, str | None], target: tuple[int, str | None], inserted: int
) -> bool:
    """Whether applying ``change`` (its ``gone`` and ``net``, ``inserted`` new rows) to the live
    table measured as ``target`` gives exactly the source's count and checksum: the proof that
    a guess at what changed missed nothing (else the table is compared key by key)."""
    rows, checksum = after(change, target[0], target[1], inserted, change.gone)
    return checksum is not None and (rows, checksum) == source


def how(inserted: int, updated: int, deleted: int) -> str:
    """A changed table's ``how`` in the ledger and ``status``."""
    return f"changed in place: {updated} updated, {inserted} inserted, {deleted} deleted"
