"""Resume: a run adopts the staging copy an earlier run built and did not switch in, and
copies again only the units it cannot prove equal to the source at its own snapshot.

A swap run records its plan with its pre-data, and each unit in the transaction that commits
it (``staged_runs``, ``staged_units``): a unit listed is a unit whose rows are there, whatever
happened to the run after (a worker killed, Redis restarted, a deadline, ``cancel``). A later
run adopts that copy only when all of these hold (else it is dropped, as any leftover):

- resume is on (``PAGILA_RESUME``) and the run is a whole ``swap`` run without ``--full``;
- the copy was built for the same schemas, from a source schema whose dump hashes the same as
  the one this run took in its snapshot (so its pre-data is this run's);
- it is younger than ``PAGILA_RESUME_MAX_AGE`` and finishing never began on it (no post-data).

The adopted plan's units are kept as they were (a split table's ranges too: the last range is
open, so rows added past it fall in it). Each committed unit is measured in the new snapshot on
the source and in staging: equal count and checksum, it is reused; otherwise it is copied again
(a copy empties its range first). The run then ends as every run does, every table verified.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.config import Settings
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import verify
from pagila_tasks.replication.copy import range_filter
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run.plan import Unit, reused_whole

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor
Measures = verify.Measures


@dataclass(frozen=True)
class Staged:
    """A staging copy an earlier run left: its plan and what was committed into it."""

    run_id: str
    fingerprint: str
    units: tuple[Unit, ...]
    age_s: float
    finishing: bool
    committed: dict[str, tuple[str, int]]
    """unit name -> (the run that copied it, rows)."""


@dataclass(frozen=True)
class Resumed:
    """What a run takes over: the earlier plan's units and those proven reusable."""

    origin: str
    units: tuple[Unit, ...]
    reused: dict[str, tuple[str, int]]
    """unit name -> (the run that copied it, rows), each proven equal at this snapshot."""
    measures: Measures = field(default_factory=dict)
    """Per table every unit of which was reused: its count and checksum, the same on both
    sides at this snapshot (verification takes them: see :func:`whole_tables`)."""

    @property
    def reason(self) -> str:
        n, k = len(self.units), len(self.reused)
        return (
            f"resumes the staging copy of run {self.origin}: {k} of {n} units reused (count and "
            f"checksum equal at this snapshot), {n - k} to copy"
        )


def find(cur: Cursor, schemas: tuple[str, ...]) -> Staged | None:
    """The newest staging copy left for exactly ``schemas``, if any."""
    row = support.staged_run(cur, schemas)
    if row is None:
        return None
    run_id, fingerprint, units, age_s, finishing, committed = row
    return Staged(
        run_id=str(run_id),
        fingerprint=str(fingerprint),
        units=tuple(Unit.from_args(u) for u in json.loads(units)),
        age_s=float(age_s),
        finishing=bool(finishing),
        committed={str(n): (str(o), int(r)) for n, o, r in json.loads(committed)},
    )


def refusal(
    staged: Staged, fingerprint: str, s: Settings, swap: bool, whole: bool, full: bool
) -> str | None:
    """Pure: why ``staged`` cannot be adopted by this run, or None when it can."""
    if not s.resume:
        return "resume is off (PAGILA_RESUME=0)"
    if full or not whole or not swap:
        return "only a whole swap run without --full resumes"
    if staged.fingerprint != fingerprint:
        return "the source's schema changed since it was built"
    if staged.age_s > s.resume_max_age:
        return f"it is older than PAGILA_RESUME_MAX_AGE ({s.resume_max_age:.0f} s)"
    if staged.finishing:
        return "its run had begun finishing (post-data) on it"
    if not staged.committed:
        return "no unit was committed into it"
    return None


def units_json(units: list[Unit]) -> str:
    """A plan's units as ``staged_runs`` keeps them."""
    return json.dumps([u.as_args() for u in units])


def reusable(
    s: Settings, run_id: str, snapshot_id: str, staged: Staged, targets: dict[str, str]
) -> tuple[dict[str, tuple[str, int]], Measures]:
    """The committed units whose staged rows equal the source's in ``snapshot_id`` (count and
    checksum, each side measured as verification measures it), with those measures (by unit
    name). A table split by heap blocks is measured whole (a block range means nothing on the
    target; its measure is by table name), so its units are reused together, once every one
    of them was committed, or not at all."""
    committed = [u for u in staged.units if u.name in staged.committed and u.kind == "table"]
    if not committed or not s.verify_checksums:
        return {}, {}
    parts = [(u.name, u.schema, u.table, range_filter(u)) for u in committed if not u.by_block]
    blocks = whole_block_tables(staged)
    parts += [(name, us[0].schema, us[0].table, sql.SQL("")) for name, us in blocks.items()]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"resume-{run_id}") as pool:
        source = pool.submit(_source, s, snapshot_id, run_id, parts)
        target = _staged(s, run_id, parts, targets)
        measured = source.result()
    equal = {n for n, *_ in parts if measured[n] == target[n] and measured[n][1] is not None}
    for n in sorted({n for n, *_ in parts} - equal):  # why a committed unit is copied again
        log.info(
            "resume %s: %s copied again: source %s, staged %s", run_id, n, measured[n], target[n]
        )
    reused = {
        u.name: staged.committed[u.name]
        for u in committed
        if (u.table_name if u.by_block else u.name) in equal
    }
    return reused, {n: measured[n] for n in equal}


def whole_tables(units: tuple[Unit, ...], reused: set[str], measures: Measures) -> Measures:
    """Pure: per table every unit of which was reused, its count and checksum: the sum of its
    units' (a checksum is a sum of row hashes), or its own for a table split by heap blocks.
    Those were measured on both sides at the run's snapshot and found equal, and no unit of
    the run writes to the table after: verification takes them instead of reading the table
    again. A table with a unit copied in this run, or whose units' checksums differ in method,
    is left out (measured as usual)."""
    tables: dict[str, list[Unit]] = {}
    for u in units:
        if u.kind == "table":
            tables.setdefault(u.table_name, []).append(u)
    out: Measures = {}
    for name, parts in tables.items():
        if not all(u.name in reused for u in parts):
            continue
        if parts[0].by_block:
            if name in measures:
                out[name] = measures[name]
            continue
        found = [measures.get(u.name) for u in parts]
        methods = {m[1].split(":", 1)[0] for m in found if m and m[1] and ":" in m[1]}
        if None in found or len(methods) != 1:
            continue
        rows = sum(m[0] for m in found if m)
        total = sum(int(str(m[1]).split(":", 1)[1]) for m in found if m)
        out[name] = (rows, f"{methods.pop()}:{total}")
    return out


def whole_block_tables(staged: Staged) -> dict[str, list[Unit]]:
    """Tables split by heap blocks all of whose units were committed, by table name."""
    tables: dict[str, list[Unit]] = {}
    for u in staged.units:
        if u.by_block:
            tables.setdefault(u.table_name, []).append(u)
    return {n: us for n, us in tables.items() if all(u.name in staged.committed for u in us)}


def forget_copied_again(
    cur: Cursor, run_id: str, units: tuple[Unit, ...], reused: set[str]
) -> None:
    """Forget every committed unit not reused: it is copied again, and its copy's claim
    (:func:`pagila_tasks.pg.support.claim_unit`) must not find it committed."""
    for u in units:
        if u.name not in reused:
            support.forget_unit(cur, run_id, u.name)


def drop_keys(
    cur: Cursor, units: tuple[Unit, ...], reused: set[str], targets: dict[str, str]
) -> list[str]:
    """Drop in staging every foreign key (the earlier run's, see :mod:`.earlykeys`) one of whose
    tables is not reused whole: copying it again empties it first, which a key pointing at it
    would refuse or cascade into a table reused. The keys dropped (added again later)."""
    whole = reused_whole(units, reused)
    live = {build: schema for schema, build in targets.items()}
    cur.execute(sqlfiles.query("staged_foreign_keys"), {"schemas": list(live)})
    dropped = []
    for schema, table, name, ref_schema, ref_table in cur.fetchall():
        ends = (live.get(schema, schema), table), (live.get(ref_schema, ref_schema), ref_table)
        if all(names.display(*end) in whole for end in ends):
            continue
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(schema, table), sql.Identifier(name)
            )
        )
        dropped.append(f"{names.display(*ends[0])}.{names.quote(name)}")
    if dropped:
        log.info("resume: dropped %d staged foreign keys: %s", len(dropped), ", ".join(dropped))
    return dropped


def restart_block_tables(
    cur: Cursor,
    run_id: str,
    units: tuple[Unit, ...],
    reused: dict[str, Any],
    targets: dict[str, str],
) -> list[str]:
    """Empty in staging every table split by heap blocks whose units are not all reused, and
    forget its committed units: a block range copied again could not find its earlier rows to
    replace, so the whole table is copied again. The tables emptied."""
    emptied = sorted({u.table_name for u in units if u.by_block and u.name not in reused})
    for u in units:
        if u.by_block and u.table_name in emptied:
            support.forget_unit(cur, run_id, u.name)
    for name in emptied:
        u = next(x for x in units if x.table_name == name)
        target = sql.Identifier(targets[u.schema], u.table)
        cur.execute(sql.SQL("TRUNCATE ONLY {}").format(target))
    return emptied


Part = tuple[str, str, str, sql.Composable]
"""What to measure: name, schema, table, filter."""


def _source(s: Settings, snapshot_id: str, run_id: str, parts: list[Part]) -> Measures:
    with snapshot_cursor(s, snapshot_id, f"pagila-resume-src {run_id}") as cur:
        return verify.measure_parts(cur, parts, True, None)


def _staged(s: Settings, run_id: str, parts: list[Part], targets: dict[str, str]) -> Measures:
    with connection(s.target_dsn, s, f"pagila-resume-tgt {run_id}") as conn, conn.cursor() as cur:
        return verify.measure_parts(cur, parts, True, targets)
