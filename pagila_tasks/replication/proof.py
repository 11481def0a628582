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
from dataclasses import dataclass, field, replace

import psycopg2
import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import largeobjects, schema, sequences, snapshot, verify
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import recorded

log = logging.getLogger(__name__)

SHOWN = 5
"""How many differing tables a reason names before it counts the rest."""


@dataclass(frozen=True)
class Side:
    """One side's data as the proof compares it."""

    tables: verify.Measures
    sequences: sequences.Values = field(default_factory=dict)
    xmin: int | None = None
    """The xmin of the snapshot it was measured in (the target's: see :attr:`Proof.measured_at`)."""
    origin: str | None = None
    """Where it was measured (:func:`.snapshot.origin`), recorded with the measures."""
    taken: frozenset[str] = frozenset()
    """Tables whose recorded measure was shown to hold (:func:`.verify.measure_known`)."""


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
    since: int | None = None
    """The xmin of the source snapshot the live copy was last proven equal to (recorded with the
    fingerprints): where the comparison looks first (:mod:`.changes`)."""
    measured_at: int | None = None
    """The xmin of the target snapshot the live tables were measured in: an apply in place
    shows them unwritten since (:func:`.changes.apply`)."""
    target_origin: str | None = None
    """Where the target was measured (recorded with the measures; the source's is prepare's)."""


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
    recorded_here = (
        f"{len(source.taken)} on the source and {len(target.taken)} on the target shown "
        "unwritten since their record, the rest hashed"
    )
    return (
        True,
        f"the live copy holds the source at this snapshot: {len(checks)} tables equal by count "
        f"and checksum ({recorded_here}), {len(source.sequences)} sequences, schemas as run "
        f"{recorded_by} left them",
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
    with warm.borrow(s.target_dsn, s, f"pagila-proof {run_id}") as conn, conn.cursor() as cur:
        last = support.fingerprint(cur, schemas)
    if last is None:
        return Proof(False, "no run recorded the live copy's schema yet", (), fingerprint)
    recorded_by = last.run_id
    if last.source_sha256 != fingerprint:
        return Proof(False, f"the source's schema changed since run {recorded_by}", (), fingerprint)
    was = recorded.Recorded.from_json(last.measures)
    live_sha, measured = _measure(
        s, run_id, snapshot_id, (schemas, tables), target_version, large_objects, was
    )
    if isinstance(live_sha, ReplicationError):  # cannot tell: copy
        why = f"the live schemas could not be dumped: {s.scrub(str(live_sha))}"
        return Proof(False, why, (), fingerprint)
    if live_sha != last.target_sha256:
        return Proof(False, f"the target's schema changed since run {recorded_by}", (), fingerprint)
    if isinstance(measured, psycopg2.Error):  # a table gone since the dump, a lock timeout: copy
        why = f"the live copy could not be measured: {s.scrub(str(measured))}"
        return Proof(False, why, (), fingerprint)
    source, target = measured
    unchanged, reason, checks = judge(recorded_by, source, target)
    log.info(
        "run %s: proof: recorded measures shown to hold for %d tables on the source, %d on the "
        "target; the rest measured",
        *(run_id, len(source.taken), len(target.taken)),
    )
    return Proof(
        unchanged,
        reason,
        tuple(checks),
        fingerprint,
        same_schemas=True,
        since=last.horizon,
        measured_at=target.xmin,
        target_origin=target.origin,
    )


def _measure(
    s: Settings,
    run_id: str,
    snapshot_id: str,
    what: tuple[tuple[str, ...], list[tuple[str, str]]],
    target_version: int,
    los: bool,
    was: recorded.Recorded,
) -> tuple[str | ReplicationError, tuple[Side, Side] | psycopg2.Error]:
    """The live schemas' fingerprint and both sides' measures (``what``: schemas, tables;
    ``was``: what the last run recorded), at once (each waits on its own server); a dump or a
    measure that failed is handed back, for the schemas' verdict to come first."""
    schemas = what[0]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"proof-{run_id}") as pool:
        live = pool.submit(schema.live_fingerprint, s, schemas, target_version)
        try:
            src = pool.submit(_source, s, snapshot_id, run_id, what, los, was.source)
            target = _target(s, run_id, what, los, was.target)
            measured: tuple[Side, Side] | psycopg2.Error = (src.result(), target)
        except psycopg2.Error as exc:
            measured = exc
        try:
            return live.result(), measured
        except ReplicationError as exc:
            return exc, measured


def _source(
    s: Settings,
    snapshot_id: str,
    run_id: str,
    what: tuple[tuple[str, ...], list[tuple[str, str]]],
    los: bool,
    was: recorded.Side,
) -> Side:
    """The source in the run's snapshot (a table shown unwritten since the last record takes
    its recorded measure), measured on two connections at once: the source side is the
    proof's long one (it hashes the tables that changed), the target's mostly reads headers."""
    schemas, tables = what
    with snapshot_cursor(s, snapshot_id, f"pagila-proof-src {run_id}") as cur:
        origin = snapshot.origin(cur)
        xmin, xmax = snapshot.bounds(cur)
        known = was.known(origin, xmax)
        todo = verify.Shared(verify.largest_first(cur, tables))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"proof-{run_id}") as pool:
            other = pool.submit(_source_share, s, snapshot_id, run_id, (tables, known), todo)
            mine, taken = verify.measure_known(cur, tables, known, todo)
            theirs, also = other.result()
        both = {**mine, **theirs}
        measures = {n: both[n] for n in (names.display(*t) for t in tables)}
        side = Side(measures, {}, xmin, origin, frozenset(taken | also))
        if los:
            side.tables[largeobjects.NAME] = largeobjects.measure(cur, staged=False)
        return replace(side, sequences=sequences.read(cur, schemas))


def _source_share(
    s: Settings,
    snapshot_id: str,
    run_id: str,
    what: tuple[list[tuple[str, str]], dict[str, tuple[recorded.Measure, int]]],
    todo: verify.Shared,
) -> tuple[verify.Measures, set[str]]:
    """The source tables a second connection in the run's snapshot takes from ``todo``
    (``what``: every table, and the recorded measures that may hold)."""
    with snapshot_cursor(s, snapshot_id, f"pagila-proof-src2 {run_id}") as cur:
        return verify.measure_known(cur, *what, todo)


def _target(
    s: Settings,
    run_id: str,
    what: tuple[tuple[str, ...], list[tuple[str, str]]],
    los: bool,
    was: recorded.Side,
) -> Side:
    """The live copy in one read-only snapshot of the target, so its parts agree in time (on
    the worker process's warm connection, if one still answers: the proof opens no backend on
    each run)."""
    schemas, tables = what
    with warm.borrow(s.target_dsn, s, f"pagila-proof-tgt {run_id}") as conn:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            side = _side(cur, tables, was)
            if los or largeobjects.count(cur):
                side.tables[largeobjects.NAME] = largeobjects.measure(cur, staged=False)
            return replace(side, sequences=sequences.read(cur, schemas))


def _side(
    cur: psycopg2.extensions.cursor, tables: list[tuple[str, str]], was: recorded.Side
) -> Side:
    """Every table measured in ``cur``'s snapshot, or taken from ``was`` where it still holds."""
    origin = snapshot.origin(cur)
    xmin, xmax = snapshot.bounds(cur)
    known = was.known(origin, xmax)
    measures, taken = verify.measure_known(cur, tables, known, writers=was.writers)
    return Side(measures, {}, xmin, origin, frozenset(taken))


def record(
    s: Settings,
    run_id: str,
    built: tuple[tuple[str, ...], str, int],
    horizon: int | None,
    measures: str | None,
) -> None:
    """After a switch: the live schemas' fingerprint beside the source's (``built``: the
    schemas, the source's fingerprint, the target's server version), the source snapshot's xmin
    and both sides' measures (JSON), for the next proof. Not recorded (the next run copies, as
    today) when the target cannot be dumped."""
    schemas, fingerprint, version = built
    try:
        live = schema.live_fingerprint(s, schemas, version)
        with connection(s.target_dsn, s, f"pagila-proof {run_id}") as conn:
            with conn.cursor() as cur:
                support.ensure_work(cur)
                shas = (fingerprint, live)
                support.save_fingerprint(cur, schemas, run_id, shas, horizon, measures)
            conn.commit()
    except (psycopg2.Error, ReplicationError) as exc:  # the copy is live either way
        log.warning("run %s: schema fingerprint not recorded: %s", run_id, s.scrub(str(exc)))
