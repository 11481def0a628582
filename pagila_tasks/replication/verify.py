"""Verification: per table, row count and content checksum on both sides must agree.

The source side is read inside the run's snapshot, so concurrent writes to the source do not
make a correct copy look wrong. Measuring each side (:func:`measure_source`,
:func:`measure_target`), comparing them (:func:`combine`, :func:`require`) and the per-table
detail the ledger keeps (:func:`detail`) are all here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.pg import sqlfiles
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import catalog, largeobjects
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import recorded
from pagila_tasks.run.model import TableTotal

Cursor = psycopg2.extensions.cursor

TAIL_PAGES = 32
"""How many of a table's last pages :func:`unwritten` reads first (256 kB at the default page
size): rows written since a measure are mostly there, and one found saves reading the rest."""


def block_ranges(blocks: int, first: int = TAIL_PAGES) -> list[tuple[int, int | None]]:
    """Pure: ``[low, high)`` ranges of a table's ``blocks``, from its end: the last ``first``
    (to the end, however far it has grown: None), then each range twice the one before it,
    down to block 0. A table is read once, whole, in about log2(blocks / first) statements;
    a write found in one range ends the read there."""
    low = max(blocks - first, 0)
    out: list[tuple[int, int | None]] = [(low, None)]
    size = first
    while low > 0:
        size *= 2
        high, low = low, max(low - size, 0)
        out.append((low, high))
    return out


EVERY_ROW = sql.SQL("")
"""No filter: a whole table is measured."""


@dataclass(frozen=True)
class TableCheck:
    """One table's verdict."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str | None
    target_checksum: str | None

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


def measure(
    cur: Cursor,
    schema: str,
    table: str,
    checksums: bool,
    by_text: bool = False,
    where: sql.Composable = EVERY_ROW,
) -> tuple[int, str | None]:
    """Row count and (if asked) checksum of one table (or of the rows ``where`` keeps: one
    unit's key range), partitions excluded.

    The checksum hashes rows as records where every column type can be hashed by its value,
    else (or when ``by_text``: a type hashes an oid, which differs between databases) their
    text form; it is prefixed with the method (``h:`` or ``t:``) so two sides that differ in
    method can never look equal.
    """
    target = sql.Identifier(schema, table)
    if not checksums:
        cur.execute(sql.SQL("SELECT count(*) FROM ONLY {} AS t{}").format(target, where))
        return int(cur.fetchone()[0]), None
    if not by_text:
        cur.execute("SAVEPOINT pagila_checksum")
        try:
            hashed = sql.SQL(sqlfiles.query("table_checksum_hashed"))
            cur.execute(hashed.format(table=target, where=where))
            count, checksum = cur.fetchone()
            cur.execute("RELEASE SAVEPOINT pagila_checksum")
            return int(count), f"h:{checksum}"
        except psycopg2.Error:  # a type without a hash function (tsvector, json, point...)
            cur.execute("ROLLBACK TO SAVEPOINT pagila_checksum")
    cur.execute(sql.SQL(sqlfiles.query("table_checksum")).format(table=target, where=where))
    count, checksum = cur.fetchone()
    return int(count), f"t:{checksum}"


Measures = dict[str, tuple[int, str | None]]

Part = tuple[str, str, str, sql.Composable]
"""What to measure: its name for people, its live schema, its table, and the rows it keeps
(:data:`EVERY_ROW`, or a unit's key range)."""


def measure_parts(
    cur: Cursor,
    parts: list[Part],
    checksums: bool,
    targets: dict[str, str] | None = None,
) -> Measures:
    """Measure each part on one side (one connection, so both sides can run at once), keyed by
    its name; ``targets`` maps a schema to where the run built it on the target (its staging
    schema), which is what is measured there."""
    targets = targets or {}
    built = [(name, targets.get(sch, sch), table, where) for name, sch, table, where in parts]
    traits = catalog.type_traits(cur, tuple({b for _, b, _, _ in built})) if checksums else {}
    return {
        name: measure(
            cur, b, table, checksums, traits.get((b, table), catalog.NO_TRAITS).hash_by_text, where
        )
        for name, b, table, where in built
    }


def measure_all(
    cur: Cursor,
    tables: list[tuple[str, str]],
    checksums: bool,
    targets: dict[str, str] | None = None,
) -> Measures:
    """Measure every table on one side, keyed by its live name (see :func:`measure_parts`)."""
    parts = [(names.display(sch, table), sch, table, EVERY_ROW) for sch, table in tables]
    return measure_parts(cur, parts, checksums, targets)


def as_xid(xid8: int) -> str:
    """An xid8 as the 32-bit xid row headers carry (``xmin``), in text."""
    return str(xid8 % (1 << 32))


def age_limit(cur: Cursor, since: int) -> int | None:
    """The age, in this transaction, of the recorded xid8 ``since``: a row whose xmin is no
    older than that was written by a transaction that had not ended when ``since``'s snapshot
    was taken. None when it cannot bound anything here (another counter, or further back than
    :data:`.recorded.WINDOW`: xids compare modulo 2**32)."""
    cur.execute("SELECT pg_catalog.age(%s::text::xid)", (as_xid(since),))
    limit = int(cur.fetchone()[0])
    return limit if 0 <= limit < recorded.WINDOW else None


def unwritten(
    cur: Cursor, table: tuple[str, str], rows: int, limit: int, writer: int | None = None
) -> bool:
    """Whether ``table`` still holds exactly the ``rows`` rows measured in a snapshot whose xmin
    is ``limit`` old (:func:`age_limit`): none written since but by the measure's own
    ``writer`` (an xid8: see :mod:`.recorded`), the same count (:func:`.recorded.holds`).

    Read in block ranges from its end (:func:`block_ranges`, ``sql/table_blocks_written.sql``):
    new rows, and the new versions of updated rows that do not fit beside the old ones, go to a
    table's end or to the free space vacuum left, so a table written since is mostly found in
    its first range or soon after, without the whole read that could only say the same."""
    mine = (
        sql.SQL("NULL")
        if writer is None
        else sql.SQL("{}::xid").format(sql.Literal(as_xid(writer)))
    )
    ident = sql.Identifier(*table)
    cur.execute(
        "SELECT pg_catalog.pg_relation_size(%s::regclass) "
        "/ pg_catalog.current_setting('block_size')::bigint",
        (ident.as_string(cur),),
    )
    counted = 0
    for low, high in block_ranges(int(cur.fetchone()[0])):
        upper = (
            sql.SQL("")
            if high is None
            else sql.SQL("AND t.ctid < {}::tid").format(sql.Literal(f"({high},0)"))
        )
        cur.execute(
            sql.SQL(sqlfiles.query("table_blocks_written")).format(
                table=ident,
                low=sql.Literal(f"({low},0)"),
                upper=upper,
                limit=sql.Literal(limit),
                writer=mine,
            )
        )
        now, written = cur.fetchone()
        if written:
            return False
        counted += int(now)
    return recorded.holds((rows, None), counted, 0)


def measure_known(
    cur: Cursor,
    tables: list[tuple[str, str]],
    known: dict[str, tuple[tuple[int, str | None], int]],
    todo: Iterator[tuple[str, str]] | None = None,
    writers: dict[str, int] | None = None,
) -> tuple[Measures, set[str]]:
    """Measure every table on one side (as :func:`measure_all`), except that a table with a
    ``known`` measure (recorded, with the xmin of the snapshot from which it holds) takes it
    when shown :func:`unwritten` since (but by its recorded writer, of ``writers``): one read
    of the rows' headers instead of hashing every row. The measures, and the names taken from
    the record.

    ``todo``: the tables this cursor measures, taken from an iterator other cursors in the same
    snapshot share (:class:`Shared`), so that a side's tables are measured on several
    connections at once; by default all of ``tables``."""
    schemas = tuple(sorted({sch for sch, _ in tables}))
    traits: dict[tuple[str, str], catalog.TypeTraits] | None = None
    limits: dict[int, int | None] = {}
    taken: set[str] = set()
    out: Measures = {}
    for sch, table in tables if todo is None else todo:
        name = names.display(sch, table)
        if name in known:
            measure_then, since = known[name]
            if since not in limits:
                limits[since] = age_limit(cur, since)
            limit = limits[since]
            writer = (writers or {}).get(name)
            if limit is not None and unwritten(cur, (sch, table), measure_then[0], limit, writer):
                out[name] = measure_then
                taken.add(name)
                continue
        if traits is None:
            traits = catalog.type_traits(cur, schemas)
        by_text = traits.get((sch, table), catalog.NO_TRAITS).hash_by_text
        out[name] = measure(cur, sch, table, True, by_text)
    return out, taken


class Shared:
    """An iterator several threads take from, each item taken once (a plain iterator is not
    safe to advance from two threads at a time)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = iter(items)
        self._guard = threading.Lock()

    def __iter__(self) -> Shared:
        return self

    def __next__(self) -> tuple[str, str]:
        with self._guard:
            return next(self._items)


def largest_first(cur: Cursor, tables: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``tables`` by their size on disk (heap and TOAST), largest first: shared between
    connections in that order, the largest start first and the small ones fill in beside."""
    quoted = [sql.Identifier(*t).as_string(cur) for t in tables]
    cur.execute(
        "SELECT coalesce(pg_catalog.pg_table_size(pg_catalog.to_regclass(n)), 0) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i",
        (quoted,),
    )
    sizes = [int(r[0]) for r in cur.fetchall()]
    return [t for _, t in sorted(zip(sizes, tables, strict=True), key=lambda p: -p[0])]


def combine(
    source: dict[str, tuple[int, str | None]], target: dict[str, tuple[int, str | None]]
) -> list[TableCheck]:
    """Pair the two sides' measures into verdicts (a table missing on the target: 0 rows)."""
    return [
        TableCheck(
            name, rows, target.get(name, (0, None))[0], checksum, target.get(name, (0, None))[1]
        )
        for name, (rows, checksum) in source.items()
    ]


def measure_source(
    s: Settings, snapshot_id: str, run_id: str, tables: list[tuple[str, str]], los: bool
) -> Measures:
    """Every table (and the large objects, ``los``) on the source, in the run's snapshot."""
    with snapshot_cursor(s, snapshot_id, f"pagila-verify-src {run_id}") as cur:
        measures = measure_all(cur, tables, s.verify_checksums)
        if los:
            measures[largeobjects.NAME] = largeobjects.measure(cur, staged=False)
        return measures


def measure_target(
    s: Settings, run_id: str, tables: list[tuple[str, str]], targets: dict[str, str], los: bool
) -> Measures:
    """Every table where the run built it on the target, one table per transaction (no
    table's lock held longer than its own measure)."""
    measures = {}
    with connection(s.target_dsn, s, f"pagila-verify-tgt {run_id}") as conn, conn.cursor() as cur:
        for table in tables:
            measures.update(measure_all(cur, [table], s.verify_checksums, targets))
            conn.commit()
        if los:
            measures[largeobjects.NAME] = largeobjects.measure(cur, staged=True)
            conn.commit()
    return measures


def require(
    checks: list[TableCheck], source_seqs: dict[Any, Any], target_seqs: dict[Any, Any]
) -> None:
    """Raise naming every table and sequence that differs; nothing when all agree."""
    bad = [c.table for c in checks if not c.ok]
    bad_seqs = [str(k) for k, v in source_seqs.items() if target_seqs.get(k) != v]
    if bad or bad_seqs:
        raise ReplicationError(
            "verification failed: "
            + "; ".join(
                ([f"tables differ: {', '.join(bad)}"] if bad else [])
                + ([f"sequences differ: {', '.join(bad_seqs)}"] if bad_seqs else [])
            )
        )


def detail(
    checks: list[TableCheck], totals: dict[str, TableTotal], how: str | dict[str, str]
) -> list[dict[str, Any]]:
    """Per table: both sides' counts and checksums, the verdict, how the new copy got it
    (``copied``, or ``kept`` as the live copy had it), and its units' bytes, spill, workers
    and seconds (the ledger's ``detail`` and the run record's ``verification``)."""
    empty = TableTotal()
    out = []
    for c in checks:
        t = totals.get(c.table, empty)
        units = {"bytes": t.bytes, "spilled": t.spilled, "workers": list(t.workers)}
        built = how if isinstance(how, str) else how.get(c.table, "copied")
        out.append(asdict(c) | {"ok": c.ok, "how": built, **units, "seconds": t.seconds})
    return out
