"""A refresh that applies the source's changes to the live copy in place, in one transaction.

When the proof (:mod:`.proof`) finds both sides' schemas as the last switch left them but some
tables' rows differ, :func:`compare` finds what differs, per table, into unlogged work tables
on the target: the rows to write (new or changed) and the keys gone.

- **First, the rows written since.** Every run that leaves the live copy equal to the source
  records its snapshot's xmin (``replication_fingerprint.source_horizon``). A row the source
  wrote after that carries an xmin at or past it, so the rows with such an xmin, read whole
  with their row hashes, are the guess; the live rows they replace are reached by key, and
  keys the source deleted, when the counts say there are some, are found from the source's
  keys alone. The guess is kept only when applying it gives exactly the source's count and
  checksum measured by the proof (:func:`changeplan.confirms`): a guess that missed a row (a
  row changed on the target by hand, a restored source) costs the comparison below, never a
  wrong copy.
- **Else, key by key**: every source row's key and hash from the snapshot are compared with
  the live rows' on the target, and ``copy_table`` tasks fetch the rows to write (``changes``
  units, :func:`fetch_filter`).

The callback's :func:`apply` writes them in one transaction (while a second connection shows
the changed tables unwritten since the proof): user triggers off (as the copy
has them off while loading), updates and inserts parents first, deletes children first,
triggers on again as they were, materialized views refreshed, sequences set; every table it
wrote, or that a foreign-key action could have written, is measured in that transaction and
must equal the source's count and checksum at the snapshot, else nothing commits. Readers see
the old rows until the commit and the new ones after it: one switch, and nothing the target's
users built is touched.

The rules (which tables may, how much may differ, in what order) are pure, in
:mod:`pagila_tasks.run.changeplan`. The work tables live in a schema registered as the run's
(``pagila_changes_<run>``), dropped when it ends, or as a leftover by the next run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.pg import rowsink, sqlfiles, support, warm
from pagila_tasks.replication import catalog, sequences, snapshot, staging, verify
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import changeplan, guard, recorded
from pagila_tasks.run.changeplan import Change, Ref, Reference, RowKey
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import TableTotal
from pagila_tasks.run.plan import Table, Unit

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

APPLY_WAIT_MS = 30000
"""How long the apply waits for a lock (someone writing to a replica table, or DDL on it)."""

BY_KEY = "SET LOCAL random_page_cost = 1.1"
"""For the transactions that join a small work table with a live table by its key: with the
default cost the planner hashes every live row to join a few thousand (measured at x50: 290 ms
to update 8,050 rows of rental, 47 ms by the key's index); a large work table still gets a hash
join."""


def work_schema(run_id: str) -> str:
    """The run's schema of work tables on the target."""
    return f"pagila_changes_{names.run_token(run_id)}"


@dataclass(frozen=True)
class Decision:
    """Whether the run applies changes in place (``changes`` not None) and why (for its plan
    line), with the bytes the comparison read from the source."""

    changes: list[Change] | None
    reason: str
    compared_bytes: int = 0

    @property
    def applies(self) -> bool:
        return self.changes is not None


def row_keys(cur: Cursor, schemas: tuple[str, ...]) -> dict[Ref, RowKey]:
    cur.execute(sqlfiles.query("changes_keys"), {"schemas": list(schemas)})
    return {
        (sch, tab): RowKey(
            sch,
            tab,
            tuple(cols) if cols else None,
            tuple(types) if types else None,
            tuple(always),
            bool(rules),
            bool(rls),
            (rs, rt),
        )
        for sch, tab, cols, types, always, rules, rls, rs, rt in cur.fetchall()
    }


def references(cur: Cursor, schemas: tuple[str, ...]) -> list[Reference]:
    cur.execute(sqlfiles.query("changes_references"), {"schemas": list(schemas)})
    return [
        Reference((a, b), (c, d), dele, upd, tuple(cols or ()))
        for a, b, c, d, dele, upd, cols in cur.fetchall()
    ]


def compare(
    s: Settings,
    run_id: str,
    snapshot_id: str,
    schemas: tuple[str, ...],
    tables: list[Table],
    checks: list[verify.TableCheck],
    since: int | None = None,
    xmax: int = 0,
) -> Decision:
    """Compare every table whose measure differs: the rows written since ``since`` (the xmin of
    the snapshot the live copy was last proven equal to, seen from this snapshot's ``xmax``)
    first, key by key where that does not account for the whole difference; the changes to
    apply, or why the run makes a full copy instead (the work schema is then gone again)."""
    verdicts = {c.table: c for c in checks}
    differ = [t for t in tables if not verdicts[t.qualified].ok]
    work = work_schema(run_id)
    with warm.borrow(s.target_dsn, s, f"pagila-changes {run_id}") as conn:
        with conn.cursor() as cur:
            keys = row_keys(cur, schemas)
            for t in differ:
                v = verdicts[t.qualified]
                why = changeplan.refusal(keys.get(t.key), t.qualified) or changeplan.too_many(
                    _change(t, keys[t.key], "", v, gone=abs(v.source_rows - v.target_rows)),
                    v.source_rows,
                    v.target_rows,
                    s.changes_max_share,
                )  # the counts alone: at least that many rows differ
                if why:
                    return Decision(None, f"a full copy: {why}")
            support.ensure_work(cur)
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(work)))
            staging.register(cur, work, "stage", schemas[0], run_id)
        conn.commit()
    planned = [
        _change(t, keys[t.key], f"t{i}", verdicts[t.qualified]) for i, t in enumerate(differ)
    ]
    size = {t.qualified: t.bytes for t in differ}
    planned.sort(key=lambda c: -size[c.name])  # the largest first: the others fill beside it
    hint = since if recorded.usable(since, xmax) else None

    def one(c: Change) -> tuple[Change, int]:
        return _compare_table(s, snapshot_id, work, c, verdicts[c.name], hint)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"changes-{run_id}") as pool:
        found = list(pool.map(one, planned))
    read = sum(n for _, n in found)
    for change, _ in found:
        v = verdicts[change.name]
        why = changeplan.too_many(change, v.source_rows, v.target_rows, s.changes_max_share)
        if why:
            drop_work(s, run_id)
            return Decision(None, f"a full copy: {why}", read)
    changes = [c for c, _ in found]
    rows = sum(c.fetch for c in changes)
    gone = sum(c.gone for c in changes)
    since = sum(c.since for c in changes)
    return Decision(
        changes,
        f"applies the changes in place: {rows} rows to fetch and {gone} to delete in "
        f"{len(changes)} tables ({since} found from the rows written since the last proof, "
        f"{len(changes) - since} key by key)",
        read,
    )


def _change(t: Table, key: RowKey, stage: str, verdict: verify.TableCheck, gone: int = 0) -> Change:
    cols = key.columns or ()
    return Change(
        schema=t.schema,
        table=t.name,
        stage=stage,
        key=cols,
        key_types=key.types or (),
        columns=t.columns,
        settable=tuple(c for c in t.columns if c not in cols and c not in key.always_identity),
        by_text=(verdict.source_checksum or "").startswith("t:"),
        text_only=t.text_only,
        root=key.root,
        gone=gone,
    )


def _work(work: str, kind: str, c: Change) -> sql.Identifier:
    return sql.Identifier(work, f"{kind}_{c.stage}")


def _listed(columns: tuple[str, ...], alias: str = "") -> sql.Composable:
    """``a, b`` or ``alias.a, alias.b``, quoted."""
    return sql.SQL(", ").join(
        sql.Identifier(alias, col) if alias else sql.Identifier(col) for col in columns
    )


def _key(c: Change, alias: str = "") -> sql.Composable:
    return _listed(c.key, alias)


def _on(c: Change, a: str, b: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(a, k), sql.Identifier(b, k)) for k in c.key
    )


def _hash(c: Change) -> sql.Composable:
    """Verification's own row hash for this table (:func:`.verify.measure`)."""
    if c.by_text:
        return sql.SQL("pg_catalog.hashtextextended(t::text, 0)")
    return sql.SQL("pg_catalog.hash_record_extended(t, 0)")


def _compare_table(
    s: Settings,
    snapshot_id: str,
    work: str,
    c: Change,
    verdict: verify.TableCheck,
    since: int | None,
) -> tuple[Change, int]:
    """One table's changes: the rows written since ``since`` when they account for the whole
    difference the proof measured, else key by key; with the bytes read from the source."""
    if since is not None:
        hinted = _compare_since(s, snapshot_id, work, c, verdict, since)
        if hinted is not None:
            return hinted
    return _compare_one(s, snapshot_id, work, c)


def _compare_since(
    s: Settings,
    snapshot_id: str,
    work: str,
    c: Change,
    verdict: verify.TableCheck,
    since: int,
) -> tuple[Change, int] | None:
    """The changes guessed from the source rows written since ``since`` (their xmin), kept only
    when applying them gives the source's count and checksum exactly (:func:`changeplan.confirms`
    on the proof's measures of both sides); None (work tables dropped) when they do not.

    The guess is cheap: the source's rows are filtered by their xmin, and only those written
    since are hashed and sent (whole: they are what the apply writes); the live rows are reached
    by key. Keys the source deleted show only in the count; when there are some, the source's
    keys alone are sent to find them."""
    live = sql.Identifier(c.schema, c.table)
    fmt = sql.SQL("text" if c.text_only else "binary")
    keys, fetch, gone, every = (_work(work, k, c) for k in ("k", "f", "g", "a"))
    with tempfile.SpooledTemporaryFile(max_size=s.spool_max_bytes, prefix="pagila-keys-") as spool:
        with snapshot_cursor(s, snapshot_id, f"pagila-changes-src {c.name}") as cur:
            limit = verify.age_limit(cur, since)
            if limit is None:  # the counter is not where the recorded xmin says: no guess
                return None
            copy = sql.SQL(sqlfiles.query("changes_since")).format(
                columns=_listed(c.columns),
                hash=_hash(c),
                live=live,
                limit=sql.Literal(limit),
                fmt=fmt,
            )
            rowsink.copy_out(cur, copy, spool)
        read = spool.tell()
        spool.seek(0)
        with warm.borrow(s.target_dsn, s, f"pagila-changes-tgt {c.name}") as conn:
            with conn.cursor() as cur:
                cur.execute(BY_KEY)
                _load(cur, keys, _hashed(_listed(c.columns)), live, spool, fmt)
                cur.execute(_fetch_sql(c, fetch, keys, live))
                cur.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE pagila_old_h IS NULL").format(fetch)
                )
                inserted = int(cur.fetchone()[0])
                deleting = verdict.target_rows + inserted - verdict.source_rows
                if deleting > 0:
                    found_in = (every, gone, fetch)
                    read += _gone_by_buckets(s, snapshot_id, cur, found_in, c, fmt, deleting)
                else:
                    _empty(cur, gone, _hashed(_key(c)), live)
                found = _balance(cur, c, fetch, gone)
                source = (verdict.source_rows, verdict.source_checksum)
                target = (verdict.target_rows, verdict.target_checksum)
                if not changeplan.confirms(found, source, target, inserted):
                    log.info("compared %s: the rows written since do not account for it", c.name)
                    for table in (keys, fetch, gone, every):
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                    conn.commit()
                    return None
                _empty(cur, _work(work, "r", c), _listed(c.columns), live)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} SELECT {} FROM {} AS s WHERE EXISTS "
                        "(SELECT 1 FROM {} AS l WHERE {})"
                    ).format(
                        _work(work, "r", c), _listed(c.columns, "s"), keys, fetch, _on(c, "s", "l")
                    )
                )
            conn.commit()
    found = replace(found, since=True)
    log.info(
        "compared %s by the rows written since: %d rows to fetch, %d gone, %d bytes read",
        *(c.name, found.fetch, found.gone, read),
    )
    return found, read


def _load(
    cur: Cursor,
    table: sql.Identifier,
    select: sql.Composable,
    live: sql.Identifier,
    spool: Any,
    fmt: sql.Composable,
) -> None:
    """What the source sent (``spool``, columns as ``select``) into the unlogged work table
    ``table``, analyzed so that joins with the live table are planned by its real size."""
    _empty(cur, table, select, live)
    cur.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT {})").format(table, fmt), spool)
    cur.execute(sql.SQL("ANALYZE {}").format(table))


def _gone_by_buckets(
    s: Settings,
    snapshot_id: str,
    tgt: Cursor,
    tables: tuple[sql.Identifier, sql.Identifier, sql.Identifier],
    c: Change,
    fmt: sql.Composable,
    deleting: int,
) -> int:
    """The live rows whose key the source deleted (``deleting`` of them, by the counts), into
    the work table ``gone``; the bytes read. Both sides' keys are put in buckets (by ranges,
    :func:`_by_range`, unless they bunch the live rows; else hashed, :func:`_by_hash`) and
    counted; only the buckets where the live table has more rows than the source's (new rows
    counted out) hold deleted keys, and only the source's keys in those are sent (into the work
    table ``every``) to find them. ``tables``: every, gone, and the fetch table (new rows)."""
    every, gone, fetch = tables
    live = sql.Identifier(c.schema, c.table)
    wanted = changeplan.buckets(deleting)
    with tempfile.SpooledTemporaryFile(max_size=s.spool_max_bytes, prefix="pagila-keys-") as spool:
        with snapshot_cursor(s, snapshot_id, f"pagila-changes-src {c.name}") as cur:
            # a source key that reaches past the binned years (or none at all): guard each value
            temporal = changeplan.range_kind(c.key_types) == "temporal"
            guarded = temporal and _binned_span(cur, c, live) is None
            bucket, of_type, on_target, ranges = _live_buckets(tgt, c, live, wanted, guarded)
            inserted = _per_bucket(tgt, bucket, fetch, sql.SQL(" WHERE t.pagila_old_h IS NULL"))
            on_source = _per_bucket(cur, bucket, sql.SQL("ONLY {}").format(live))
            chosen = changeplan.deleted_in(on_source, on_target, inserted)
            among = sql.SQL("{} = ANY ({}::{}[]){}").format(
                bucket, sql.Literal(chosen), of_type, _within(c, ranges, chosen)
            )
            keys = sql.SQL("COPY (SELECT {} FROM ONLY {} AS t WHERE {}) TO STDOUT WITH (FORMAT {})")
            rowsink.copy_out(cur, keys.format(_key(c, "t"), live, among, fmt), spool)
        read = spool.tell()
        spool.seek(0)
        _load(tgt, every, _key(c), live, spool, fmt)
    also = sql.SQL(" AND {}").format(among)
    tgt.execute(_gone_sql(c, gone, every, live, also))
    return read


def _per_bucket(
    cur: Cursor,
    bucket: sql.Composable,
    table: sql.Composable,
    where: sql.Composable = verify.EVERY_ROW,
) -> dict[int, int]:
    """Rows of ``table`` (as ``t``, filtered by ``where``) per ``bucket``."""
    cur.execute(
        sql.SQL("SELECT {} AS b, count(*) FROM {} AS t{} GROUP BY 1").format(bucket, table, where)
    )
    return dict(cur.fetchall())


def _binned_span(cur: Cursor, c: Change, live: sql.Identifier) -> tuple[Any, Any] | None:
    """The first and last value of a date or timestamp key (read by its index), as the type it
    is binned as, when both lie inside :data:`changeplan.BINNED`; None when the table is empty
    or reaches outside them (a bucket must then guard each value: measured, the guard is a
    fifth of a count by bins). The bounds are checked before the cast: a date past 294276 AD
    does not cast to a timestamp."""
    lead, own = sql.Identifier(c.key[0]), sql.SQL(c.key_types[0])
    cur.execute(
        sql.SQL(
            "SELECT min({0})::{2}, max({0})::{2} FROM ONLY {1} "
            "HAVING min({0}) >= {3}::{4} AND max({0}) <= {5}::{4}"
        ).format(
            lead,
            live,
            _binned(c.key_types[0]),
            sql.Literal(changeplan.BINNED[0]),
            own,
            sql.Literal(changeplan.BINNED[1]),
        )
    )
    found = cur.fetchone()
    return None if found is None or found[0] is None else (found[0], found[1])


def _live_buckets(
    tgt: Cursor, c: Change, live: sql.Identifier, wanted: int, guarded: bool = True
) -> tuple[sql.Composable, sql.Composable, dict[int, int], changeplan.Ranges | None]:
    """How keys are put in buckets (by ranges unless they bunch the live rows, else by hash),
    the buckets' type, the live table's rows per bucket, and the ranges (None: hashed).
    ``guarded``: a date or timestamp outside the binned years may come (from the source)."""
    only = sql.SQL("ONLY {}").format(live)
    ranged = _by_range(tgt, c, live, wanted, guarded)
    if ranged is not None:
        bucket, of_type, ranges = ranged
        counts = _per_bucket(tgt, bucket, only)
        if not changeplan.bunched(counts, wanted):
            return bucket, of_type, counts, ranges
        log.info("compared %s: its key ranges bunch its rows, hashed instead", c.name)
    bucket, of_type = _by_hash(c, wanted)
    return bucket, of_type, _per_bucket(tgt, bucket, only), None


def _within(c: Change, ranges: changeplan.Ranges | None, chosen: list[Any]) -> sql.Composable:
    """`` AND (lead BETWEEN .. OR ..)``: the leading column's bounds of the ``chosen`` ranges
    (:func:`changeplan.key_bounds`), so that their rows are read by the key's index (measured:
    the keys of 100 of 2,048 ranges of a 136k-row ``payment`` partition in 9-11 ms, against
    36-41 ms filtering the whole table); nothing when hashed, or too many ranges."""
    bounds = changeplan.key_bounds(ranges, chosen) if ranges is not None else None
    if ranges is None or not bounds:
        return verify.EVERY_ROW  # no more filter than the buckets'
    column = sql.Identifier("t", c.key[0])
    if ranges.kind == "temporal":  # a bin's start, up to the next bin's
        within = sql.SQL("({0} >= {1}::{3} AND {0} < {2}::{3})")
        of_type = _binned(c.key_types[0])
    else:
        within = sql.SQL("{0} BETWEEN {1}::{3} AND {2}::{3}")
        of_type = sql.SQL("bigint")
    return sql.SQL(" AND ({})").format(
        sql.SQL(" OR ").join(
            within.format(column, sql.Literal(lo), sql.Literal(hi), of_type) for lo, hi in bounds
        )
    )


def _binned(key_type: str) -> sql.Composable:
    """The type a date or timestamp key is binned as (``date_bin`` takes timestamps only)."""
    zoned = key_type.endswith("with time zone")
    return sql.SQL("timestamp with time zone" if zoned else "timestamp without time zone")


def _by_range(
    tgt: Cursor, c: Change, live: sql.Identifier, wanted: int, guarded: bool = True
) -> tuple[sql.Composable, sql.Composable, changeplan.Ranges] | None:
    """Buckets of ``t`` by ranges of the key's leading column, about ``wanted`` over the live
    table's span (read by the key's index), and their SQL type: ``key >> shift`` for an
    integer, ``date_bin`` for a date or timestamp (integer arithmetic on its microseconds:
    measured 14 ms a count of a 136k-row ``payment`` partition, against 20-23 ms by
    ``width_bucket`` of its epoch). No hashing: 36 ms hashed. None when the column is of another
    type, or the table is empty or reaches a date outside :data:`changeplan.BINNED`."""
    kind = changeplan.range_kind(c.key_types)
    lead, column = sql.Identifier(c.key[0]), sql.Identifier("t", c.key[0])
    if kind == "integer":
        tgt.execute(sql.SQL("SELECT min({0}), max({0}) FROM ONLY {1}").format(lead, live))
        lowest, highest = tgt.fetchone()
        if lowest is None:
            return None
        shift = changeplan.range_shift(lowest, highest, wanted)
        by_range = sql.SQL("({} >> {})").format(column, sql.Literal(shift))
        ranges = changeplan.Ranges("integer", shift=shift)
        return by_range, sql.SQL(c.key_types[0]), ranges  # one of INTEGER_KEYS
    if kind == "temporal":
        of_type, own = _binned(c.key_types[0]), sql.SQL(c.key_types[0])
        span = _binned_span(tgt, c, live)
        if span is None:  # empty, or a date outside the binned years
            return None
        lowest, highest = span
        stride = changeplan.bin_stride(lowest, highest, wanted)
        binned = "pg_catalog.date_bin({1}::interval, {0}::{3}, {2}::{3})"
        guard = "CASE WHEN {0} BETWEEN {4}::{5} AND {6}::{5} THEN " + binned + " END"
        by_bin = sql.SQL(guard if guarded else binned).format(
            column,
            sql.Literal(f"{stride // timedelta(microseconds=1)} microseconds"),
            sql.Literal(lowest),
            of_type,
            sql.Literal(changeplan.lowest_binned(lowest, stride)),
            own,
            sql.Literal(changeplan.BINNED[1]),
        )  # a date outside (new on the source: an infinite one, say) in a NULL bucket
        return by_bin, of_type, changeplan.Ranges("temporal", stride=stride)
    return None


def _by_hash(c: Change, wanted: int) -> tuple[sql.Composable, sql.Composable]:
    """Buckets of ``t`` by the hash of its key's columns (``wanted``: a power of two), and their
    type. The hash's high half: the low bits of a row hash of two equal columns are all zero
    (measured: two buckets of 64 for a key (a, b) with a = b)."""
    by_hash = sql.SQL("((pg_catalog.hash_record_extended(ROW({}), 0) >> 32) & {})")
    return by_hash.format(_key(c, "t"), sql.Literal(wanted - 1)), sql.SQL("bigint")


def _fetch_sql(
    c: Change, fetch: sql.Identifier, keys: sql.Identifier, live: sql.Identifier
) -> sql.Composed:
    return sql.SQL(sqlfiles.query("changes_fetch")).format(
        fetch=fetch,
        keys=keys,
        live=live,
        key=_key(c),
        source_key=_key(c, "s"),
        on=_on(c, "s", "l"),
        hash=_hash(c),
    )


def _gone_sql(
    c: Change,
    gone: sql.Identifier,
    keys: sql.Identifier,
    live: sql.Identifier,
    also: sql.Composable = verify.EVERY_ROW,
) -> sql.Composed:
    return sql.SQL(sqlfiles.query("changes_gone")).format(
        gone=gone,
        keys=keys,
        live=live,
        live_key=_key(c, "t"),
        on=_on(c, "s", "t"),
        hash=_hash(c),
        also=also,
    )


def _balance(cur: Cursor, c: Change, fetch: sql.Identifier, gone: sql.Identifier) -> Change:
    """``c`` with what its work tables hold: rows to fetch, rows gone and the checksum's change."""
    cur.execute(sql.SQL(sqlfiles.query("changes_balance")).format(fetch=fetch, gone=gone))
    fetched, deleted, net, new = cur.fetchone()
    found = c.as_json() | {
        "fetch": int(fetched),
        "gone": int(deleted),
        "net": int(net),
        "new": int(new),
    }
    return Change(**found)  # type: ignore[arg-type]


def _hashed(columns: sql.Composable) -> sql.Composable:
    """``columns`` and a row-hash column, as the work tables of keys and of gone rows hold."""
    return sql.SQL("{}, 0::bigint AS pagila_h").format(columns)


def _empty(
    cur: Cursor, table: sql.Identifier, select: sql.Composable, live: sql.Identifier
) -> None:
    """An empty unlogged work table with ``select``'s columns of the live table."""
    cur.execute(
        sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM ONLY {} WITH NO DATA").format(
            table, select, live
        )
    )


def _compare_one(s: Settings, snapshot_id: str, work: str, c: Change) -> tuple[Change, int]:
    """One table's keys and row hashes from the snapshot, compared on the target with the live
    table's: the keys to fetch and the keys gone, in work tables; the bytes read."""
    live = sql.Identifier(c.schema, c.table)
    fmt = sql.SQL("text" if c.text_only else "binary")
    keys, fetch, gone = (_work(work, k, c) for k in ("k", "f", "g"))
    with tempfile.SpooledTemporaryFile(max_size=s.spool_max_bytes, prefix="pagila-keys-") as spool:
        with snapshot_cursor(s, snapshot_id, f"pagila-changes-src {c.name}") as cur:
            copy = sql.SQL("COPY (SELECT {}, {} FROM ONLY {} AS t) TO STDOUT WITH (FORMAT {})")
            rowsink.copy_out(cur, copy.format(_key(c), _hash(c), live, fmt), spool)
        read = spool.tell()
        spool.seek(0)
        with warm.borrow(s.target_dsn, s, f"pagila-changes-tgt {c.name}") as conn:
            with conn.cursor() as cur:
                _load(cur, keys, _hashed(_key(c)), live, spool, fmt)
                cur.execute(_fetch_sql(c, fetch, keys, live))
                cur.execute(_gone_sql(c, gone, keys, live))
                found = _balance(cur, c, fetch, gone)
                _empty(cur, _work(work, "r", c), _listed(c.columns), live)
            conn.commit()
    log.info(
        "compared %s key by key: %d rows to fetch, %d gone, %d bytes read",
        *(c.name, found.fetch, found.gone, read),
    )
    return found, read


def units(changes: list[Change]) -> list[Unit]:
    """One ``copy_table`` unit per table with rows to fetch (a table whose changes were found
    from the rows written since has them already)."""
    return [
        Unit(c.schema, c.table, c.columns, kind="changes", stage=c.stage, text_only=c.text_only)
        for c in changes
        if c.fetch and not c.since
    ]


def fetch_filter(s: Settings, run_id: str, c: Change) -> sql.Composable:
    """The WHERE clause of a ``changes`` unit's source COPY: the keys to fetch, read from the
    target's work table and sent as text arrays, cast back to the key's types on the source."""
    fetch = _work(work_schema(run_id), "f", c)
    texts = sql.SQL(", ").join(
        sql.SQL("array_agg({}::text)").format(sql.Identifier(k)) for k in c.key
    )
    with (
        warm.borrow(s.target_dsn, s, f"pagila-changes-keys {c.name}") as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql.SQL("SELECT {} FROM {}").format(texts, fetch))
        arrays = cur.fetchone()
    aliases = [f"k{i}" for i in range(len(c.key))]
    return sql.SQL(" WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({}))").format(
        _key(c),
        sql.SQL(", ").join(
            sql.SQL("u.{}::{}").format(sql.Identifier(a), sql.SQL(typ))
            for a, typ in zip(aliases, c.key_types, strict=True)
        ),
        sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Literal(a or [])) for a in arrays),
        sql.SQL(", ").join(sql.Identifier(a) for a in aliases),
    )


Proven = dict[str, tuple[int, int, str | None, str | None]]
"""Per table, the proof's source rows, live rows, source checksum and live checksum."""


@dataclass(frozen=True)
class Applied:
    """What the apply's transaction did and proved."""

    checks: list[verify.TableCheck]
    hows: dict[str, str]
    sequences: int
    at: Any
    held_ms: float
    detail: list[dict[str, Any]] = field(default_factory=list)
    """The per-table detail written in the ledger row (and kept in the run record)."""
    written: frozenset[str] = frozenset()
    """The tables it wrote or measured whole after its writes: their measures hold only from
    its commit."""
    writer: tuple[int, int, frozenset[str]] | None = None
    """The xmin of a snapshot taken once writers were locked out of the changed tables, the
    transaction's own xid8 and those tables: the next proof takes their recorded measures
    when nobody else wrote them since (:mod:`pagila_tasks.run.recorded`); the other tables it
    wrote, which it did not lock, are measured again."""


def apply(
    ctx: Context,
    run_id: str,
    snapshot_id: str,
    schemas: tuple[str, ...],
    changes: list[Change],
    proven: Proven,
    ledger: Callable[[list[dict[str, Any]]], dict[str, Any]],
    totals: dict[str, TableTotal],
    xmins: tuple[int | None, int | None] = (None, None),
    origins: tuple[str | None, str | None] = (None, None),
) -> Applied:
    """Apply ``changes`` to the live tables in one transaction that commits only when every
    table it wrote, or could have written, equals the source at the snapshot (``proven``: the
    proof's verdicts, both sides), with the ledger
    row ``ledger(detail)`` makes (``totals``: the fetches' bytes per table) and the run
    snapshot's xmin and both sides' measures recorded for the next run (``xmins``: that one,
    and the xmin of the target snapshot the proof measured the live tables in; ``origins``:
    where each side was read, :mod:`pagila_tasks.run.recorded`). On any failure
    nothing is changed, the schemas' fingerprint is forgotten (the next run copies in full)
    and the error is raised."""
    s = ctx.s
    with snapshot_cursor(s, snapshot_id, f"pagila-changes-src {run_id}") as cur:
        seq_values = sequences.read(cur, schemas)
        matviews = catalog.matviews(cur, schemas, only_populated=True)
    with warm.borrow(s.target_dsn, s, f"pagila-changes-apply {run_id}") as conn:
        try:
            with conn.cursor() as cur:
                done = _apply_in(
                    ctx, cur, run_id, schemas, changes, (proven, xmins[1]), seq_values, matviews
                )
                done = replace(done, detail=verify.detail(done.checks, totals, done.hows))
                row = ledger(done.detail)
                support.insert_replication(
                    conn,
                    row
                    | {
                        "switched_at": done.at,
                        "switch_ms": done.held_ms,
                        "target_state": "changed in place",
                    },
                )
                support.save_measures(cur, schemas, xmins[0], _record(done, xmins, origins))
            conn.commit()
        except Exception as exc:
            conn.rollback()
            with conn.cursor() as cur:
                support.forget_fingerprint(cur, schemas)
            conn.commit()
            raise ReplicationError(
                f"the changes could not be applied in place, nothing changed (the next run "
                f"copies in full): {s.scrub(str(exc))}"
            ) from None
    return done


def _record(
    done: Applied, xmins: tuple[int | None, int | None], origins: tuple[str | None, str | None]
) -> str:
    """The measures the apply leaves for the next proof: the source's hold from the run's
    snapshot, a kept live table's from the proof's, a changed one's from once it was locked
    (with the apply's xid as its writer), another written one's not at all."""
    verdicts = [
        (c.table, c.source_rows, c.target_rows, c.source_checksum, c.target_checksum)
        for c in done.checks
    ]
    since = {c.table: None if c.table in done.written else xmins[1] for c in done.checks}
    writers: dict[str, int] = {}
    if done.writer is not None:
        locked_from, xid, locked = done.writer
        since |= dict.fromkeys(locked, locked_from)
        writers = dict.fromkeys(locked, xid)
    return recorded.sides(verdicts, origins, (xmins[0], since), writers).as_json()


def _apply_in(
    ctx: Context,
    cur: Cursor,
    run_id: str,
    schemas: tuple[str, ...],
    changes: list[Change],
    measured: tuple[Proven, int | None],
    seq_values: sequences.Values,
    matviews: list[tuple[str, str]],
) -> Applied:
    started = time.monotonic()
    proven, measured_at = measured

    def timed(what: str) -> None:
        log.info("apply %s: %s after %.3f s", run_id, what, time.monotonic() - started)

    cur.execute("SET LOCAL lock_timeout = %s", (f"{APPLY_WAIT_MS}ms",))
    cur.execute(BY_KEY)
    locked_from = _lock_out_writers(cur, changes)
    timed("writers locked out")
    work = work_schema(run_id)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"apply-{run_id}") as pool:
        checked = pool.submit(_unwritten_since, ctx.s, run_id, changes, proven, measured_at)
        refs, counts, deleted = _write(cur, work, schemas, changes)
        cur.execute("SELECT pg_catalog.pg_current_xact_id()::text::bigint")
        writer = (locked_from, int(cur.fetchone()[0]), frozenset(c.name for c in changes))
        timed("written")
        for mschema, mview in matviews + _users_matviews(cur, schemas, changes):
            _refresh(cur, mschema, mview)
        timed("matviews refreshed")
        unwritten = checked.result()
    timed(f"{len(unwritten)} of {len(changes)} tables shown unwritten since the proof")
    # a tree a foreign-key action could have written is measured whole; a changed table's
    # written rows are proven by their hashes, the rest by the comparison (see changeplan.after)
    acted = changeplan.touched(changes, refs)
    keys = row_keys(cur, schemas)
    written = {c.ref for c in changes if c.name not in unwritten}  # by someone since the proof
    reached = sorted(k for k, rk in keys.items() if rk.root in acted or k in written)
    whole = verify.measure_all(cur, reached, checksums=True) if reached else {}
    checks = [
        verify.TableCheck(name, proven[name][0], rows, proven[name][2], checksum)
        for name, (rows, checksum) in whole.items()
    ]
    for c in changes:
        if c.name not in whole:
            _prove_writes(cur, work, c)
            src_rows, tgt_rows, src_sum, tgt_sum = proven[c.name]
            inserted, deleted_now = counts[c.name][0], deleted[c.name]
            rows, checksum = changeplan.after(c, tgt_rows, tgt_sum, inserted, deleted_now)
            checks.append(verify.TableCheck(c.name, src_rows, rows, src_sum, checksum))
    timed(f"{len(whole)} tables measured, {len(changes)} tables' writes proven")
    verify.require(checks, {}, {})
    sequences.apply(cur, seq_values)  # last: setval is not undone by a rollback
    verify.require([], seq_values, sequences.read(cur, schemas))
    hows = {
        c.name: changeplan.how(counts[c.name][0], counts[c.name][1], deleted[c.name])
        for c in changes
    }
    done = {c.table for c in checks}
    kept = [verify.TableCheck(name, *sides) for name, sides in proven.items() if name not in done]
    guard.before_commit(ctx, run_id)
    cur.execute("SELECT clock_timestamp()")
    at = cur.fetchone()[0]
    held = round((time.monotonic() - started) * 1000, 1)
    every = sorted(checks + kept, key=lambda c: c.table)
    hows = {c.table: "kept" for c in every} | hows
    return Applied(every, hows, len(seq_values), at, held, written=frozenset(done), writer=writer)


def _lock_out_writers(cur: Cursor, changes: list[Change]) -> int:
    """Lock writers out of the changed tables until the commit (SHARE ROW EXCLUSIVE: readers
    go on); the xmin of a snapshot taken once the lock was granted (what the apply's record of
    them holds from)."""
    if changes:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(*c.ref) for c in changes)
            )
        )
    return snapshot.bounds(cur)[0]


def _write(
    cur: Cursor, work: str, schemas: tuple[str, ...], changes: list[Change]
) -> tuple[list[Reference], dict[str, tuple[int, int]], dict[str, int]]:
    """The fetched rows written and the gone keys deleted, user triggers off meanwhile: the
    foreign keys between the schemas' tables, and per table (inserted, updated) and deleted."""
    refs = references(cur, schemas)
    order = changeplan.parents_first(changes, refs)
    triggers = _triggers_off(cur, changes)
    counts = {c.name: _upsert(cur, work, c) for c in order}
    deleted = {c.name: _delete(cur, work, c) for c in reversed(order)}
    _triggers_on(cur, triggers)
    return refs, counts, deleted


def _unwritten_since(
    s: Settings, run_id: str, changes: list[Change], proven: Proven, measured_at: int | None
) -> set[str]:
    """The changed tables shown as the proof measured them, read on a connection of its own
    while the apply writes (called once the apply has locked writers out: every statement here
    then sees all that any other writer committed, and none of the apply's own rows): the same
    count, and no row written by a transaction that had not ended when the proof's snapshot was
    taken. Their count and checksum after the writes then follow from the proof's and the
    writes'; any other changed table is measured whole after the writes, as every one is when
    this connection cannot be had or fails (more reading, the same verdict)."""
    if measured_at is None or not changes:
        return set()
    try:
        with warm.borrow(s.target_dsn, s, f"pagila-changes-check {run_id}") as conn:
            conn.set_session(readonly=True)
            with conn.cursor() as cur:
                return _shown_unwritten(cur, changes, proven, measured_at)
    except psycopg2.Error as exc:
        log.warning("run %s: every changed table measured whole: %s", run_id, s.scrub(str(exc)))
        return set()


def _shown_unwritten(
    cur: Cursor, changes: list[Change], proven: Proven, measured_at: int
) -> set[str]:
    limit = verify.age_limit(cur, measured_at)  # ages are this transaction's
    if limit is None:  # not this counter, or too far behind
        return set()
    shown = set()
    for c in changes:
        if verify.unwritten(cur, c.ref, proven[c.name][1], limit):
            shown.add(c.name)
        else:
            log.info("%s was written on the target since the proof: measured whole", c.name)
    return shown


def _refresh(cur: Cursor, schema: str, name: str) -> None:
    """Refresh a live materialized view; CONCURRENTLY where it has the unique index that needs
    (readers keep reading the old rows until the commit), else plainly (they wait for it)."""
    view = sql.Identifier(schema, name)
    cur.execute("SAVEPOINT pagila_refresh")
    try:
        cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(view))
        cur.execute("RELEASE SAVEPOINT pagila_refresh")
    except psycopg2.errors.ObjectNotInPrerequisiteState:  # no usable unique index
        cur.execute("ROLLBACK TO SAVEPOINT pagila_refresh")
        cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(view))


def _users_matviews(
    cur: Cursor, schemas: tuple[str, ...], changes: list[Change]
) -> list[tuple[str, str]]:
    """The target's users' populated materialized views that read a changed table (a switch
    makes them again on the new copy; here they are refreshed in the same transaction)."""
    tables = {sql.Identifier(*r).as_string(cur) for c in changes for r in (c.ref, c.root)}
    if not tables:
        return []
    cur.execute(
        sqlfiles.query("changes_dependent_matviews"),
        {"tables": sorted(tables), "schemas": list(schemas)},
    )
    return [(a, b) for a, b in cur.fetchall()]


def _upsert(cur: Cursor, work: str, c: Change) -> tuple[int, int]:
    """(inserted, updated): the fetched rows whose key the live table holds set to the
    source's values, then the others inserted."""
    if not c.fetch:
        return 0, 0
    live, rows = sql.Identifier(c.schema, c.table), _work(work, "r", c)
    updated = 0
    if c.settable and c.new != c.fetch:  # some fetched rows replace live ones
        cur.execute(
            sql.SQL(sqlfiles.query("changes_update")).format(
                live=live,
                set=_listed(c.settable),
                values=_listed(c.settable, "r"),
                rows=rows,
                on=_on(c, "r", "t"),
            )
        )
        updated = cur.rowcount
    if c.new == 0:  # every fetched row replaced a live one: the insert's probes find nothing
        return 0, updated
    cur.execute(
        sql.SQL(sqlfiles.query("changes_insert")).format(
            live=live, cols=_listed(c.columns), rows=rows, on=_on(c, "r", "t")
        )
    )
    return cur.rowcount, updated


def _prove_writes(cur: Cursor, work: str, c: Change) -> None:
    """Inside the apply: every fetched row is in the live table with the source's hash, and no
    deleted key is left; else the transaction fails."""
    live = sql.Identifier(c.schema, c.table)
    if c.fetch:
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM {} AS f JOIN ONLY {} AS t ON {} WHERE {} = f.pagila_h"
            ).format(_work(work, "f", c), live, _on(c, "f", "t"), _hash(c))
        )
        written = int(cur.fetchone()[0])
        if written != c.fetch:
            raise ReplicationError(
                f"{c.name}: {written} of the {c.fetch} rows written hash as the source's"
            )
    if c.gone:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} AS g JOIN ONLY {} AS t ON {}").format(
                _work(work, "g", c), live, _on(c, "g", "t")
            )
        )
        left = int(cur.fetchone()[0])
        if left:
            raise ReplicationError(f"{c.name}: {left} rows the source deleted are still there")


def _delete(cur: Cursor, work: str, c: Change) -> int:
    if not c.gone:
        return 0
    cur.execute(
        sql.SQL(sqlfiles.query("changes_delete")).format(
            live=sql.Identifier(c.schema, c.table), gone=_work(work, "g", c), on=_on(c, "g", "t")
        )
    )
    return cur.rowcount


_ENABLE = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}


def _triggers_off(cur: Cursor, changes: list[Change]) -> list[tuple[str, str, str, str]]:
    """The changed tables' enabled user triggers, turned off in this transaction (the owner
    may; a copy's rows are loaded without them too)."""
    tables = [sql.Identifier(c.schema, c.table).as_string(cur) for c in changes]
    if not tables:
        return []
    cur.execute(sqlfiles.query("changes_triggers"), {"tables": tables})
    found = [(sch, tab, n, e) for sch, tab, n, e in cur.fetchall()]
    for sch, tab, name, _ in found:
        cur.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                sql.Identifier(sch, tab), sql.Identifier(name)
            )
        )
    return found


def _triggers_on(cur: Cursor, found: list[tuple[str, str, str, str]]) -> None:
    for sch, tab, name, enabled in found:
        cur.execute(
            sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                sql.Identifier(sch, tab), sql.SQL(_ENABLE[enabled]), sql.Identifier(name)
            )
        )


def drop_work(s: Settings, run_id: str) -> None:
    """Drop the run's work schema (a leftover is the next run's to drop)."""
    try:
        with warm.borrow(s.target_dsn, s, f"pagila-changes {run_id}") as conn:
            staging.drop(conn, [work_schema(run_id)], staging.DROP_WAIT_MS, keep_extensions=False)
    except psycopg2.Error as exc:
        log.warning("run %s: work schema not dropped: %s", run_id, s.scrub(str(exc)))
