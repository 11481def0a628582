"""The replication's first phase (the ``pagila.replicate`` task): decide the run, build pre-data.

Snapshot, catalog, plan, checks, then the new copy's schema (pre-data) in staging schemas beside
the live ones (``swap``) or in their place (``in-place``); what was decided is saved as the run's
:class:`~pagila_tasks.run.model.ReplicationPlan` for the copies and the callback. The copies are
in :mod:`.copy`, the callback and the errback in :mod:`.finish`. Each step logs one ``STEP``
line with the run id.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import config
from pagila_tasks.base import names
from pagila_tasks.base.errors import ConfigError, Refused, ReplicationError, UsageError
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import CATALOG_PATH, connection
from pagila_tasks.replication import (
    catalog,
    changes,
    earlykeys,
    extensions,
    fkeys,
    indexes,
    keep,
    keepplan,
    largeobjects,
    proof,
    protect,
    resume,
    schema,
    snapshot,
    staging,
)
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import eta, guard, plan
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicateOptions, ReplicationPlan, Resolved, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Findings:
    """What prepare read in the snapshot and on the target, and decided from it."""

    tables: list[plan.Table]
    spans: dict[str, tuple[int, int]]
    large_objects: int
    source_version: int
    target_version: int
    needs: extensions.TargetPlan
    swap: bool
    kept: keepplan.KeepPlan | None
    bounds: tuple[int, int] = (0, 0)
    """The snapshot's xmin and xmax (xid8): see :func:`.snapshot.bounds`."""
    origin: str | None = None
    """The source's origin (:func:`.snapshot.origin`)."""
    foreign: tuple[fkeys.ForeignKey, ...] = ()
    """The source's foreign keys in the snapshot (a whole run's)."""


def prepare(
    ctx: Context, run_id: str, options: ReplicateOptions
) -> tuple[list[plan.Unit], list[str]]:
    """Snapshot, plan, checks, the proof, the target schema; returns the units the chord fans out
    (none when the live copy is proven to hold the source already) and the reused tables it
    builds beside them (:func:`.indexes.of_reused`)."""
    guard.run(ctx, run_id, "replicate", options)
    chosen = _checked(run_id, options.resolve(ctx.s))
    ctx.record.running(run_id)
    ctx.step(run_id, "prepare", "export snapshot")
    snapshot_id = snapshot.start_holder(ctx.record, run_id)
    found, proven = _read_and_prove(ctx, run_id, snapshot_id, chosen)
    layout = staging.Layout(chosen.schemas, swap=found.swap)
    applying = _compare(ctx, run_id, snapshot_id, chosen, found, proven)
    with connection(ctx.s.target_dsn, ctx.s, f"pagila-prepare {run_id}") as tgt:
        resumed = _resume(ctx, run_id, tgt, snapshot_id, layout, chosen, (proven, applying))
        _clear_leftovers(tgt, layout, run_id)
        units = _units(ctx, found, proven, resumed, applying)
        touching = _tables_in_place(ctx, run_id, found.tables) if chosen.tables is not None else []
        if chosen.tables is None and not (proven.unchanged or resumed or applying.applies):
            _build_schema(ctx, run_id, tgt, layout, found, (proven.fingerprint, units))
    last = ctx.record.last_replication()
    decided = _plan(layout, units, found, touching, chosen, (proven, applying), resumed, last)
    decided = _early_builds(ctx, run_id, decided, found)
    ctx.record.save_plan(run_id, decided)
    return _queue(ctx, run_id, decided, resumed)


def _early_builds(
    ctx: Context, run_id: str, decided: ReplicationPlan, found: Findings
) -> ReplicationPlan:
    """The plan with what the copies build as their tables complete (indexes, then foreign
    keys): a whole swap run's only (in place, readers could see the difference)."""
    off = ctx.s.index_jobs <= 0
    if off or not decided.swap or decided.subset or decided.applies or not decided.units:
        return decided
    copied = {u.table_name for u in decided.units}  # a partitioned parent's: later
    keys = earlykeys.planned(list(found.foreign), decided.targets, copied)
    return replace(
        decided,
        indexes=_early_indexes(ctx, run_id, decided, copied),
        early_keys=tuple(tuple(k.as_list()) for k in keys),  # type: ignore[misc]
    )


def _early_indexes(
    ctx: Context, run_id: str, decided: ReplicationPlan, copied: set[str]
) -> dict[str, tuple[str, ...]]:
    """Per table, the indexes and keys the copy that completes it builds at once
    (:mod:`.indexes`)."""
    archive = ctx.record.schema(run_id)
    if archive is None:
        return {}
    text = schema.script(
        ctx.s,
        archive,
        "post-data",
        decided.source_version,
        decided.target_version,
        foreign_keys=False,
    )
    return {t: sts for t, sts in indexes.by_table(text, decided.targets).items() if t in copied}


def _queue(
    ctx: Context, run_id: str, decided: ReplicationPlan, resumed: resume.Resumed | None
) -> tuple[list[plan.Unit], list[str]]:
    """Each unit's first state (reused units are done, and count as copied for their table's
    early index build); the units the chord fans out, and the tables reused whole it builds
    beside them (a reused table without indexes to build counts as built at once)."""
    reused = resumed.reused if resumed is not None else {}
    for u in decided.units:
        if u.name in reused:
            if decided.builds_early(u.table_name):
                ctx.record.table_copied(run_id, u.table_name, [u.name])
            origin, rows = reused[u.name]
            ctx.record.unit(
                run_id, u.name, state="reused", table=u.table_name, rows=rows, origin=origin
            )
        else:
            ctx.record.unit(run_id, u.name, state="queued", table=u.table_name)
    todo = [u for u in decided.units if u.name not in reused]
    builds = indexes.of_reused(decided)
    whole = plan.reused_whole(decided.units, set(reused)) - set(builds)
    for table in sorted(whole & earlykeys.tables(earlykeys.of_plan(decided))):
        ctx.record.table_built(run_id, table)  # nothing of its own to build
    ctx.step(run_id, "prepare", f"{len(todo)} units to copy: {decided.reason}")
    return todo, builds


def _resume(
    ctx: Context,
    run_id: str,
    tgt: psycopg2.extensions.connection,
    snapshot_id: str,
    layout: staging.Layout,
    chosen: Resolved,
    decided: tuple[proof.Proof, changes.Decision],
) -> resume.Resumed | None:
    """The staging copy an earlier run left, adopted when it may be (see :mod:`.resume`), with
    the units of it proven equal to the source in this snapshot; none for a run that copies
    nothing or applies changes in place."""
    proven, applying = decided
    if proven.unchanged or chosen.tables is not None or applying.applies:
        return None
    with tgt.cursor() as cur:  # a target without the working tables: find says none
        staged = resume.find(cur, layout.schemas)
        why_not = staged and (
            resume.refusal(staged, proven.fingerprint, ctx.s, layout.swap, True, chosen.full)
            or _schemas_gone(cur, layout)
        )
        if staged is None or why_not:
            if staged is not None:
                log.info("run %s: not resuming run %s: %s", run_id, staged.run_id, why_not)
            tgt.commit()
            return None
        support.adopt_staged(cur, staged.run_id, run_id)
        guard.before_commit(ctx, run_id)
    tgt.commit()
    ctx.step(run_id, "prepare", f"prove the units run {staged.run_id} staged")
    reused, measures = resume.reusable(ctx.s, run_id, snapshot_id, staged, layout.targets())
    with tgt.cursor() as cur:
        resume.forget_copied_again(cur, run_id, staged.units, set(reused))
        dropped = resume.drop_keys(cur, staged.units, set(reused), layout.targets())
        resume.restart_block_tables(cur, run_id, staged.units, reused, layout.targets())
        guard.before_commit(ctx, run_id)
    tgt.commit()
    if dropped:
        keys = ", ".join(dropped)
        ctx.step(run_id, "prepare", f"dropped the staged foreign keys of tables to copy: {keys}")
    whole = resume.whole_tables(staged.units, set(reused), measures)
    return resume.Resumed(staged.run_id, staged.units, reused, whole)


def _schemas_gone(cur: psycopg2.extensions.cursor, layout: staging.Layout) -> str | None:
    """Why a staging copy cannot be adopted though its record says it can: its schemas went."""
    gone = [b for b in layout.targets().values() if not staging.exists(cur, b)]
    return f"its schemas are gone: {', '.join(gone)}" if gone else None


def _units(
    ctx: Context,
    found: Findings,
    proven: proof.Proof,
    resumed: resume.Resumed | None,
    applying: changes.Decision,
) -> list[plan.Unit]:
    """None when the live copy is proven equal; the rows to fetch when changes are applied in
    place; a resumed copy's own (its ranges as they were, the large objects as the source has
    them now); else planned from the catalog."""
    if proven.unchanged:
        return []
    if applying.changes is not None:
        return changes.units(applying.changes)
    if resumed is not None:
        units = [u for u in resumed.units if u.kind == "table"]
    else:
        units = plan.plan_units(
            found.tables, ctx.s.split_rows, found.spans, found.swap, ctx.s.split_bytes
        )
    if found.large_objects:
        units.append(largeobjects.unit())
    return units


def _read_and_prove(
    ctx: Context, run_id: str, snapshot_id: str, chosen: Resolved
) -> tuple[Findings, proof.Proof]:
    """The catalogs read while a whole run's source schema is dumped beside (each mostly waits:
    on the servers, on pg_dump), then the proof (:func:`_prove`)."""
    whole = chosen.tables is None
    ctx.step(
        run_id,
        "prepare",
        "read the source catalog and the target" + (", dump the source schema" if whole else ""),
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dump-{run_id}") as pool:
        dumped = pool.submit(_dump_source, ctx, run_id, snapshot_id, chosen) if whole else None
        found = _read(ctx, run_id, snapshot_id, chosen)
        return found, _prove(ctx, run_id, snapshot_id, chosen, found, dumped)


def _dump_source(
    ctx: Context, run_id: str, snapshot_id: str, chosen: Resolved
) -> tuple[bytes, str]:
    """A whole run's source schema dumped in the snapshot, and its fingerprint."""
    with connection(ctx.s.source_dsn, ctx.s, f"pagila-prepare-dump {run_id}") as conn:
        version = int(conn.server_version)  # which pg_dump
    archive = schema.dump(ctx.s, chosen.schemas, snapshot_id, version)
    return archive, schema.archive_fingerprint(ctx.s, archive, version)


def _prove(
    ctx: Context,
    run_id: str,
    snapshot_id: str,
    chosen: Resolved,
    found: Findings,
    dumped: Future[tuple[bytes, str]] | None,
) -> proof.Proof:
    """A whole run keeps the source schema ``dumped`` in the snapshot (for the build and
    post-data) and, unless ``--full``, proves whether the live copy holds the source already."""
    if dumped is None:
        return proof.Proof(False, f"--tables copies the {len(found.tables)} tables it names")
    archive, fingerprint = dumped.result()
    ctx.record.store_schema(run_id, archive)
    if chosen.full:
        return proof.Proof(False, "--full copies every table", (), fingerprint)
    ctx.step(run_id, "prepare", "prove the live copy (schemas, counts, checksums)")
    tables = [t.key for t in found.tables]
    return proof.prove(
        ctx.s,
        run_id,
        snapshot_id,
        chosen.schemas,
        tables,
        fingerprint,
        found.target_version,
        found.large_objects > 0,
    )


def _compare(
    ctx: Context,
    run_id: str,
    snapshot_id: str,
    chosen: Resolved,
    found: Findings,
    proven: proof.Proof,
) -> changes.Decision:
    """When the proof found the schemas unchanged but rows differing: the differing tables
    compared key by key, and whether the run applies their changes in place (see
    :mod:`.changes`); otherwise (or when that cannot be), a full copy."""
    if proven.unchanged or not proven.same_schemas or not ctx.s.changes_in_place:
        return changes.Decision(None, "")
    if any(c.table == largeobjects.NAME and not c.ok for c in proven.checks):
        return changes.Decision(None, "a full copy: the large objects differ")
    ctx.step(
        run_id,
        "prepare",
        "compare the tables that differ: rows written since first, else key by key",
    )
    try:
        return changes.compare(
            ctx.s,
            run_id,
            snapshot_id,
            chosen.schemas,
            found.tables,
            list(proven.checks),
            proven.since,
            found.bounds[1],
        )
    except psycopg2.Error as exc:  # cannot tell what changed: copy everything
        changes.drop_work(ctx.s, run_id)
        return changes.Decision(
            None, f"a full copy: the comparison failed: {ctx.s.scrub(str(exc))}"
        )


def _checked(run_id: str, chosen: Resolved) -> Resolved:
    """The run's schemas checked again on the worker (the record could name anything)."""
    try:
        config.check_schemas(chosen.schemas, "the run's schemas")
    except ConfigError as exc:
        raise Refused(f"run {run_id}: {exc}") from None
    return chosen


def _read(ctx: Context, run_id: str, snapshot_id: str, chosen: Resolved) -> Findings:
    """The source catalog in the snapshot, the target's checks, swap or in place, what to keep."""
    s, schemas = ctx.s, chosen.schemas
    with snapshot_cursor(s, snapshot_id, f"pagila-prepare {run_id}") as cur:
        catalog.require_schemas(cur, schemas)
        picked = list(chosen.tables) if chosen.tables is not None else None
        tables = catalog.select_tables(cur, schemas, picked)
        spans = _key_spans(cur, tables, s.split_rows, s.split_bytes)
        whole = chosen.tables is None
        wanted = extensions.needed(cur, schemas) if whole else []
        with warm.borrow(s.target_dsn, s, f"pagila-prepare {run_id}") as tgt, tgt.cursor() as tc:
            protect.check(cur, tc, schemas, chosen.overwrite)
            needs = extensions.check_target(tc, wanted, schemas)
            hosts = {e.schema for e in wanted} | {
                sch for _, sch in staging.extensions_in(tc, list(schemas))
            }
            # An extension cannot move between copies (see .extensions): in place.
            swap = s.replace == "swap" and whole and not hosts & set(schemas)
            kept = _keep_plan(ctx, run_id, tgt, cur, chosen, swap) if whole else None
            return Findings(
                tables=tables,
                spans=spans,
                large_objects=largeobjects.count(cur) if whole else 0,
                source_version=int(cur.connection.server_version),
                target_version=int(tgt.server_version),
                needs=needs,
                swap=swap,
                kept=kept,
                bounds=snapshot.bounds(cur),
                origin=snapshot.origin(cur),
                foreign=tuple(fkeys.read(cur, schemas)) if whole else (),
            )


def _key_spans(
    cur: psycopg2.extensions.cursor, tables: list[plan.Table], split_rows: int, split_bytes: int
) -> dict[str, tuple[int, int]]:
    """The key span of each table large enough to split (see :func:`plan.plan_units`)."""
    spans = {}
    for t in plan.tables_to_split(tables, split_rows, split_bytes):
        span = catalog.key_span(cur, t)
        if span:
            spans[t.qualified] = span
    return spans


def _plan(
    layout: staging.Layout,
    units: list[plan.Unit],
    found: Findings,
    touching: list[fkeys.ForeignKey],
    chosen: Resolved,
    decided: tuple[proof.Proof, changes.Decision],
    resumed: resume.Resumed | None,
    last: Run | None,
) -> ReplicationPlan:
    proven, applying = decided
    applies = applying.applies
    return ReplicationPlan(
        schemas=layout.schemas,
        swap=layout.swap,
        targets=layout.targets(),
        units=tuple(units),
        table_keys=tuple(t.key for t in found.tables),
        foreign_keys=tuple(tuple(fk.as_list()) for fk in touching),
        subset=chosen.tables is not None,
        large_objects=found.large_objects,
        source_version=found.source_version,
        target_version=found.target_version,
        prepared_at=time.time(),
        unchanged=proven.unchanged,
        reason="; ".join(
            [proven.reason]
            + ([applying.reason] if applying.reason else [])
            + ([resumed.reason] if resumed else [])
        ),
        proven=tuple(
            (c.table, c.source_rows, c.target_rows, c.source_checksum, c.target_checksum)
            for c in proven.checks
        )
        if proven.unchanged or applies
        else (),
        fingerprint=proven.fingerprint,
        reused=tuple(resumed.reused) if resumed else (),
        reused_measures=dict(resumed.measures) if resumed else {},
        expected=plan.expected_bytes(units, found.tables, eta.copied_bytes(last)),
        max_rate=chosen.max_rate,
        unit_overhead=eta.unit_overhead(last),
        applies=applies,
        changes=tuple(applying.changes or ()),
        compared_bytes=applying.compared_bytes,
        horizon=found.bounds[0] or None,
        measured_at=proven.measured_at,
        origins=(found.origin, proven.target_origin),
    )


def _keep_plan(
    ctx: Context,
    run_id: str,
    tgt: psycopg2.extensions.connection,
    src: psycopg2.extensions.cursor,
    chosen: Resolved,
    swap: bool,
) -> keepplan.KeepPlan:
    """What the target's users built that this run keeps; refused (nothing changed) when it
    would lose something without ``--drop-dependents``. What an earlier in-place run took down
    and could not put back is put back first, so it is kept like the rest."""
    support.ensure(tgt, "replication")
    with tgt.cursor() as tc:
        support.ensure_work(tc)
        for other, earlier in keep.pending(tc, run_id):
            missed = keep.put_back(tc, earlier)
            keep.forget(tc, other)
            if missed:
                log.warning("run %s: not put back after run %s: %s", run_id, other, missed)
                ctx.record.keeping(run_id, not_put_back=missed)
        guard.before_commit(ctx, run_id)
        tgt.commit()
        mine = protect.replaceable(tc, chosen.schemas, chosen.overwrite)
        incoming = keep.source_manifest(src, chosen.schemas)
        token = names.run_token(run_id)
        kept = keep.assess(tc, incoming, chosen.schemas, swap, token, mine)
    keepplan.check(kept, chosen.drop_dependents, keepplan.how_lost(swap))
    if kept.lost:
        log.warning("run %s: --drop-dependents: letting go %s", run_id, "; ".join(kept.lost))
    ctx.record.keeping(run_id, keeps=kept.kept, drops=kept.lost)
    return kept


def _clear_leftovers(
    conn: psycopg2.extensions.connection, layout: staging.Layout, run_id: str
) -> None:
    """The bookkeeping tables made; what earlier runs left dropped: staging copies (a failed
    run's, but the one this run adopted) and previous copies. Only a schema a run registered
    is ever dropped: one that merely carries a staging name is someone's (the preflight refuses
    to run beside it)."""
    support.ensure(conn, "replication")
    with conn.cursor() as cur:
        support.ensure_work(cur)
        cur.execute(sql.SQL("TRUNCATE {}").format(largeobjects.STAGE))  # an earlier run's
        adopted = set(staging.registered(cur, "stage", run_id))
        stale = [name for name in staging.registered(cur, "stage") if name not in adopted]
        support.forget_staged(cur, keep_run=run_id)
        old = staging.registered(cur, "old")
    conn.commit()
    staging.drop(conn, list(dict.fromkeys(stale)), staging.DROP_WAIT_MS, keep_extensions=False)
    left = staging.drop(conn, old, staging.DROP_WAIT_MS)
    if left:
        log.warning("previous copies still in use, left for a later run: %s", left)


def _build_schema(
    ctx: Context,
    run_id: str,
    tgt: psycopg2.extensions.connection,
    layout: staging.Layout,
    found: Findings,
    planned: tuple[str, list[plan.Unit]],
) -> None:
    """Build pre-data from the source schema dumped in the snapshot (:func:`_prove`); a swap
    records the plan it builds for, so a later run can resume it (:mod:`.resume`)."""
    archive = ctx.record.schema(run_id)
    if archive is None:
        raise ReplicationError(f"run {run_id}: its schema dump was lost from Redis")
    text = schema.script(ctx.s, archive, "pre-data", found.source_version, found.target_version)
    extensions.create_outside(tgt, found.needs, lambda: guard.before_commit(ctx, run_id))
    where = "beside the live copy" if layout.swap else "in place of the live copy"
    ctx.step(run_id, "prepare", f"build {layout.schemas}, pre-data {where}")
    _pre_data(ctx, run_id, tgt, layout, text, found.needs, found.kept, planned)


def _pre_data(
    ctx: Context,
    run_id: str,
    conn: psycopg2.extensions.connection,
    layout: staging.Layout,
    text: str,
    needs: extensions.TargetPlan,
    kept: keepplan.KeepPlan | None,
    planned: tuple[str, list[plan.Unit]],
) -> None:
    """The new copy's pre-data, in one transaction: all of it, or nothing changed. In place,
    what the target's users built around the schemas is dropped first (and the plan to make it
    again kept on the target, in the same transaction)."""
    with conn.cursor() as cur:
        if layout.swap:
            with staging.as_live(cur, layout, create=True):
                for ext, version in needs.inside:
                    extensions.create(cur, ext, version)
                schema.run(cur, text)
            for live in layout.schemas:
                staging.register(cur, layout.build(live), "stage", live, run_id)
            fingerprint, units = planned
            support.save_staged_run(
                cur, run_id, layout.schemas, fingerprint, resume.units_json(units)
            )
        else:
            _reset_in_place(cur, run_id, layout, kept)
            for ext, version in needs.inside:
                extensions.create(cur, ext, version)
            schema.run(cur, text)
        guard.before_commit(ctx, run_id)
    conn.commit()


def _reset_in_place(
    cur: psycopg2.extensions.cursor,
    run_id: str,
    layout: staging.Layout,
    kept: keepplan.KeepPlan | None,
) -> None:
    """In place: what depends on the schemas taken down (its plan saved), the schemas emptied."""
    if kept is not None:
        keep.save(cur, run_id, kept)
        keep.run_steps(cur, kept.detach, "before the in-place reset")
        if not kept.lost:  # else --drop-dependents accepted what the reset takes
            _nothing_else_depends(cur, layout.schemas)
    support.forget_fingerprint(cur, layout.schemas)  # the copy it stood for is going
    for live in layout.schemas:
        staging.empty(cur, live)
    staging.register_live(cur, layout.schemas, run_id)


def _nothing_else_depends(cur: psycopg2.extensions.cursor, schemas: tuple[str, ...]) -> None:
    """Before an in-place reset: what the plan took down was all that depended on the schemas
    (something made since the plan was read would go with the reset's CASCADE: refused, and
    the transaction, reset included, rolled back)."""
    others = keep.outside_dependents(cur, *schemas)
    if others:
        shown = ", ".join(names.quote(s) for s in schemas)
        raise ReplicationError(
            f"the in-place reset of {shown} would drop what depends on them, made since this "
            f"run read what to keep: {'; '.join(others)}; nothing changed"
        )


def _tables_in_place(ctx: Context, run_id: str, tables: list[plan.Table]) -> list[fkeys.ForeignKey]:
    """A --tables run copies into the live tables: they must exist; the foreign keys touching
    them are dropped for the copy (the callback adds them back, validated)."""
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-prepare {run_id}", search_path=CATALOG_PATH) as c2:
        with c2.cursor() as cur:
            missing = [t.qualified for t in tables if not catalog.table_exists(cur, t.key)]
            if missing:
                raise UsageError(
                    f"the target has no table {', '.join(missing)}: run a full replicate first"
                )
            ctx.step(run_id, "prepare", "drop foreign keys touching the chosen tables")
            touching = fkeys.touching(cur, [t.key for t in tables])
        guard.before_commit(ctx, run_id)
        fkeys.drop(c2, touching)
    return touching
