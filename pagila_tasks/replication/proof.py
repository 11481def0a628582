"""Whether the live target already holds the source at the run's snapshot, proven before
anything is built; a run so proven copies nothing, builds nothing and switches nothing.

The proof has three parts, all required; a difference, or anything that cannot be read or was
not recorded, means a copy (a doubt only ever causes more copying, never less):

- **the schemas**: the source's schema dump in the snapshot hashes as the one the last
  switched-in copy was made from, and the target's live schemas dump as they did just after
  that switch (``replication_fingerprint``), so neither side's DDL changed since;
- **the rows**: every table's count and checksum on the source in the snapshot equal the live
  target table's, measured now with verification's own measure (:mod:`.verify`), so a change
  made on either side, by anyone, shows: nothing is assumed untouched;
- **the rest of the data**: every sequence's value, and the large objects' count and checksum.

Materialized views are not compared: the target's were refreshed from tables now proven equal.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg2

from pagila_tasks.base import names
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.pg import support
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import largeobjects, schema, sequences, verify
from pagila_tasks.replication.snapshot import snapshot_cursor

log = logging.getLogger(__name__)

SHOWN = 5
"""How many differing tables a reason names before it counts the rest."""


@dataclass(frozen=True)
class Side:
    """One side's data as the proof compares it."""

    tables: verify.Measures
    sequences: sequences.Values = field(default_factory=dict)


@dataclass(frozen=True)
class Proof:
    """Whether the run may keep the live copy as it is, why (for its first line and the
    ledger), the verdicts that prove it, and the source schema's fingerprint (recorded after
    a switch, for the next run's proof)."""

    unchanged: bool
    reason: str
    checks: tuple[verify.TableCheck, ...] = ()
    fingerprint: str = ""
    same_schemas: bool = False
    """Both sides' schemas are as the last switch left them and every table was measured: the
    rows that differ may be applied in place (:mod:`.changes`)."""


def judge(
    recorded_by: str, source: Side, target: Side
) -> tuple[bool, str, list[verify.TableCheck]]:
    """Pure: the live copy is unchanged when every table, sequence and the large objects agree."""
    checks = verify.combine(source.tables, target.tables)
    differ = [c.table for c in checks if not c.ok] + sorted(set(target.tables) - set(source.tables))
    if differ:
        shown = ", ".join(differ[:SHOWN]) + (
            f" and {len(differ) - SHOWN} more" if len(differ) > SHOWN else ""
        )
        return (
            False,
            f"{len(differ)} of {len(checks)} tables differ from the live copy: {shown}",
            checks,
        )
    seqs = [names.display(*k) for k, v in source.sequences.items() if target.sequences.get(k) != v]
    if seqs or set(target.sequences) - set(source.sequences):
        return (
            False,
            f"sequences differ from the live copy: {', '.join(seqs) or 'extra ones'}",
            checks,
        )
    return (
        True,
        f"the live copy holds the source at this snapshot: {len(checks)} tables equal by count "
        f"and checksum, {len(source.sequences)} sequences, schemas as run {recorded_by} left them",
        checks,
    )


def prove(
    s: Settings,
    run_id: str,
    snapshot_id: str,
    schemas: tuple[str, ...],
    tables: list[tuple[str, str]],
    fingerprint: str,
    target_version: int,
    large_objects: bool,
) -> Proof:
    """Prove the live target equal to the source in ``snapshot_id``, or say why it is not."""
    if not s.verify_checksums:
        return Proof(False, "checksums are off (PAGILA_VERIFY_CHECKSUMS=0): counts prove nothing")
    with connection(s.target_dsn, s, f"pagila-proof {run_id}") as conn, conn.cursor() as cur:
        last = support.fingerprint(cur, schemas)
    if last is None:
        return Proof(False, "no run recorded the live copy's schema yet", (), fingerprint)
    recorded_by, source_sha, target_sha = last
    if source_sha != fingerprint:
        return Proof(False, f"the source's schema changed since run {recorded_by}", (), fingerprint)
    try:
        live = schema.live_fingerprint(s, schemas, target_version)
    except ReplicationError as exc:  # cannot tell: copy
        why = f"the live schemas could not be dumped: {s.scrub(str(exc))}"
        return Proof(False, why, (), fingerprint)
    if live != target_sha:
        return Proof(False, f"the target's schema changed since run {recorded_by}", (), fingerprint)
    try:
        with snapshot_cursor(s, snapshot_id, f"pagila-proof-src {run_id}") as cur:
            source_seqs = sequences.read(cur, schemas)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"proof-{run_id}") as pool:
            tables_src = pool.submit(
                verify.measure_source, s, snapshot_id, run_id, tables, large_objects
            )
            target = _target(s, run_id, schemas, tables, large_objects)
            source = Side(tables_src.result(), source_seqs)  # the snapshot's: read once
            unchanged, reason, checks = judge(recorded_by, source, target)
    except psycopg2.Error as exc:  # a table gone since the dump, a lock timeout: copy
        why = f"the live copy could not be measured: {s.scrub(str(exc))}"
        return Proof(False, why, (), fingerprint)
    return Proof(unchanged, reason, tuple(checks), fingerprint, same_schemas=True)


def _target(
    s: Settings, run_id: str, schemas: tuple[str, ...], tables: list[tuple[str, str]], los: bool
) -> Side:
    """The live copy in one read-only snapshot of the target, so its parts agree in time."""
    with connection(s.target_dsn, s, f"pagila-proof-tgt {run_id}") as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            measures = verify.measure_all(cur, tables, checksums=True)
            if los or largeobjects.count(cur):
                measures[largeobjects.NAME] = largeobjects.measure(cur, staged=False)
            return Side(measures, sequences.read(cur, schemas))


def record(
    s: Settings, run_id: str, schemas: tuple[str, ...], fingerprint: str, version: int
) -> None:
    """After a switch: the live schemas' fingerprint beside the source's, for the next proof.
    Not recorded (the next run copies, as today) when the target cannot be dumped."""
    try:
        live = schema.live_fingerprint(s, schemas, version)
        with connection(s.target_dsn, s, f"pagila-proof {run_id}") as conn:
            with conn.cursor() as cur:
                support.ensure_work(cur)
                support.save_fingerprint(cur, schemas, run_id, fingerprint, live)
            conn.commit()
    except (psycopg2.Error, ReplicationError) as exc:  # the copy is live either way
        log.warning("run %s: schema fingerprint not recorded: %s", run_id, s.scrub(str(exc)))
