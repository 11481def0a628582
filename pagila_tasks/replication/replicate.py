"""The replication's first two phases, called by the thin tasks in :mod:`pagila_tasks.tasks`.

``prepare``: snapshot, catalog, plan, checks, then the new copy's schema (pre-data) in staging
schemas beside the live ones (``swap``) or in their place (``in-place``). ``copy_table``: one
unit. The callback and the errback are in :mod:`.finish`. Each phase logs one
``STEP`` line with the run id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import config
from pagila_tasks.base import names
from pagila_tasks.base.errors import (
    PoisonMessage,
    Refused,
    ReplicationError,
    SnapshotLost,
    UsageError,
)
from pagila_tasks.config import ConfigError
from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.pg.db import CATALOG_PATH, connection
from pagila_tasks.replication import (
    catalog,
    copy,
    extensions,
    fkeys,
    keep,
    keepplan,
    largeobjects,
    protect,
    schema,
    snapshot,
    staging,
)
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import guard, plan
from pagila_tasks.run.context import Context
from pagila_tasks.run.progress import RECORD_TTL, run_key

log = logging.getLogger(__name__)

DROP_WAIT_MS = 2000
"""How long dropping a previous copy waits for readers still on it before leaving it for the
next run (a DROP queued behind a reader would hold up nobody else, but must not hang a run)."""


def layout_for(ctx: Context, record: dict[str, Any]) -> staging.Layout:
    """Where this run builds each schema (as prepare decided and recorded)."""
    submitted = guard.options(record)
    schemas = tuple(record.get("schemas") or submitted.get("schemas") or ctx.s.schemas)
    return staging.Layout(schemas, swap=record.get("replace") == "swap")


def prepare(
    ctx: Context,
    run_id: str,
    requested: list[str] | None,
    schemas: list[str] | None = None,
    overwrite: bool = False,
    drop_dependents: bool = False,
) -> list[plan.Unit]:
    """Snapshot, plan, checks and the target schema; returns the units the chord fans out."""
    s = ctx.s
    submitted = {
        "tables": requested,
        "schemas": schemas,
        "overwrite": overwrite,
        "drop_dependents": drop_dependents,
    }
    guard.run(ctx, run_id, "replicate", submitted)
    chosen = tuple(schemas) if schemas else s.schemas
    try:
        config.check_schemas(chosen, "the run's schemas")
    except ConfigError as exc:
        raise Refused(f"run {run_id}: {exc}") from None
    ctx.progress.set_state(run_id, "running")
    log.info("STEP prepare %s: export snapshot", run_id)
    snapshot_id = snapshot.start_holder(run_id, ctx.redis)
    with snapshot_cursor(s, snapshot_id, f"pagila-prepare {run_id}") as cur:
        source_version = int(cur.connection.server_version)
        log.info("STEP prepare %s: read the source catalog", run_id)
        catalog.require_schemas(cur, chosen)
        tables = catalog.select_tables(cur, chosen, requested)
        spans = {}
        for t in plan.tables_to_split(tables, s.split_rows):
            span = catalog.key_span(cur, t)
            if span:
                spans[t.qualified] = span
        wanted = [] if requested else extensions.needed(cur, chosen)
        large_objects = 0 if requested else largeobjects.count(cur)
        with connection(s.target_dsn, s, f"pagila-prepare {run_id}") as tgt, tgt.cursor() as tc:
            protect.check(cur, tc, chosen, overwrite or s.overwrite_target)
            target_version = int(tgt.server_version)
            needs = extensions.check_target(tc, wanted, chosen)
            hosts = {e.schema for e in wanted} | {
                sch for _, sch in staging.extensions_in(tc, list(chosen))
            }
            # An extension cannot move between copies (see .extensions): in place.
            swap = s.replace == "swap" and requested is None and not hosts & set(chosen)
            kept = None
            if requested is None:
                lets_go = (drop_dependents, overwrite or s.overwrite_target)
                kept = _keep_plan(ctx, run_id, tgt, cur, chosen, swap, lets_go)
    layout = staging.Layout(chosen, swap=swap)
    ctx.progress.set_state(run_id, "running", replace="swap" if swap else "in-place")
    units = plan.plan_units(tables, s.split_rows, spans)
    if large_objects:
        units.append(largeobjects.unit())
    with connection(s.target_dsn, s, f"pagila-prepare {run_id}") as tgt:
        support.ensure(tgt, "replication")
        with tgt.cursor() as cur:
            cur.execute(sqlfiles.query("replication_work_ddl"))
            cur.execute(sql.SQL("TRUNCATE {}").format(largeobjects.STAGE))  # an earlier run's
        tgt.commit()
        _drop_leftovers(tgt, layout)
        if requested is not None:
            touching = _tables_in_place(ctx, run_id, tgt, tables)
        else:
            touching = []
            log.info("STEP prepare %s: dump the source schema", run_id)
            archive = schema.dump(s, layout.schemas, snapshot_id, source_version)
            ctx.redis.set(f"{run_key(run_id)}:schema", archive, ex=RECORD_TTL)
            text = schema.script(s, archive, "pre-data", source_version, target_version)
            extensions.create_outside(tgt, needs)
            where = "beside the live copy" if layout.swap else "in place of the live copy"
            log.info("STEP prepare %s: build %s, pre-data %s", run_id, layout.schemas, where)
            _pre_data(ctx, run_id, tgt, layout, text, needs, kept)
    ctx.progress.set_state(
        run_id,
        "running",
        schemas=list(layout.schemas),
        targets=layout.targets(),
        plan=[u.as_args() for u in units],
        unit_names=[u.name for u in units],
        tables=sorted({u.table_name for u in units}),
        table_keys=[list(t.key) for t in tables],
        foreign_keys=[fk.as_list() for fk in touching],
        subset=requested is not None,
        large_objects=large_objects,
        source_version=source_version,
        target_version=target_version,
        built=True,  # the target changed (in place: the reset; --tables: its keys dropped)
        prepared_at=time.time(),
    )
    for u in units:
        ctx.progress.unit(run_id, u.name, state="queued", table=u.table_name)
    log.info("STEP prepare %s: %d units planned", run_id, len(units))
    return units


def _keep_plan(
    ctx: Context,
    run_id: str,
    tgt: psycopg2.extensions.connection,
    src: psycopg2.extensions.cursor,
    chosen: tuple[str, ...],
    swap: bool,
    lets_go: tuple[bool, bool],
) -> keepplan.KeepPlan:
    """What the target's users built that this run keeps; refused (nothing changed) when it
    would lose something without ``--drop-dependents`` (``lets_go``: that flag and
    ``--overwrite-target``). What an earlier in-place run took down and could not put back is
    put back first, so it is kept like the rest."""
    drop_dependents, overwrite = lets_go
    support.ensure(tgt, "replication")
    with tgt.cursor() as tc:
        tc.execute(sqlfiles.query("replication_work_ddl"))
        for other, earlier in keep.pending(tc, run_id):
            missed = keep.put_back(tc, earlier)
            keep.forget(tc, other)
            if missed:
                log.warning("run %s: not put back after run %s: %s", run_id, other, missed)
                ctx.progress.set_state(run_id, "running", not_put_back=missed)
        guard.still_ours(ctx, run_id)
        tgt.commit()
        mine = protect.replaceable(tc, chosen, overwrite)
        incoming = keep.source_manifest(src, chosen)
        kept = keep.assess(tc, incoming, chosen, swap, names.run_token(run_id), mine)
    keepplan.check(kept, drop_dependents or ctx.s.drop_dependents, keepplan.how_lost(swap))
    if kept.lost:
        log.warning("run %s: --drop-dependents: letting go %s", run_id, "; ".join(kept.lost))
    ctx.progress.set_state(run_id, "running", keeps=list(kept.kept), drops=list(kept.lost))
    return kept


def _drop_leftovers(conn: psycopg2.extensions.connection, layout: staging.Layout) -> None:
    """Drop what earlier runs left: staging copies (a failed run's) and previous copies. Only a
    schema a run registered is ever dropped: one that merely carries a staging name is someone's
    (the preflight refuses to run beside it)."""
    with conn.cursor() as cur:
        stale = staging.registered(cur, "stage")
        old = staging.registered(cur, "old")
    conn.commit()
    staging.drop(conn, list(dict.fromkeys(stale)), DROP_WAIT_MS, keep_extensions=False)
    left = staging.drop(conn, old, DROP_WAIT_MS)
    if left:
        log.warning("previous copies still in use, left for a later run: %s", left)


def _pre_data(
    ctx: Context,
    run_id: str,
    conn: psycopg2.extensions.connection,
    layout: staging.Layout,
    text: str,
    needs: extensions.TargetPlan,
    kept: keepplan.KeepPlan | None,
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
        else:
            if kept is not None:
                keep.save(cur, run_id, kept)
                keep.run_steps(cur, kept.detach, "before the in-place reset")
                if not kept.lost:  # else --drop-dependents accepted what the reset takes
                    _nothing_else_depends(cur, layout.schemas)
            for live in layout.schemas:
                staging.empty(cur, live)
            staging.register_live(cur, layout.schemas, run_id)
            for ext, version in needs.inside:
                extensions.create(cur, ext, version)
            schema.run(cur, text)
        guard.still_ours(ctx, run_id)
    conn.commit()


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


def _tables_in_place(
    ctx: Context, run_id: str, conn: psycopg2.extensions.connection, tables: list[plan.Table]
) -> list[fkeys.ForeignKey]:
    """A --tables run copies into the live tables: they must exist; the foreign keys touching
    them are dropped for the copy (the callback adds them back, validated)."""
    s = ctx.s
    with conn.cursor() as cur:
        missing = [t.qualified for t in tables if not catalog.table_exists(cur, t.key)]
    if missing:
        raise UsageError(
            f"the target has no table {', '.join(missing)}: run a full replicate first"
        )
    log.info("STEP prepare %s: drop foreign keys touching the chosen tables", run_id)
    with connection(s.target_dsn, s, f"pagila-prepare {run_id}", search_path=CATALOG_PATH) as c2:
        with c2.cursor() as cur:
            touching = fkeys.touching(cur, [t.key for t in tables])
        ctx.lock.assert_held(run_id)
        fkeys.drop(c2, touching)
    return touching


def copy_table(
    ctx: Context, run_id: str, schema_name: str, table: str, args: dict[str, Any], worker: str
) -> dict[str, Any]:
    """Copy one planned unit inside the run's snapshot, refusing to commit without the lock.

    Deliveries are counted per unit: a unit whose worker keeps dying (so no retry policy sees
    it fail) is given up after ``PAGILA_RETRY_MAX + 3`` deliveries.
    """
    record = guard.run(ctx, run_id, "replicate")
    unit = guard.unit(record, schema_name, table, args)
    deliveries = ctx.redis.hincrby(run_key(run_id), f"deliveries:{unit.name}", 1)
    if deliveries > ctx.s.retry_max + 3:
        error = f"{unit.name} was delivered {deliveries} times (its worker keeps dying); giving up"
        ctx.progress.unit(run_id, unit.name, state="failed", error=error)
        raise PoisonMessage(error)
    snapshot_id = ctx.redis.hget(run_key(run_id), "snapshot")
    if not snapshot_id:
        raise SnapshotLost(
            f"run {run_id} has no snapshot (its holder never started or Redis lost it)"
        )
    target_schema = (record.get("targets") or {}).get(unit.schema)
    if target_schema is None and unit.kind == "table":
        raise ReplicationError(f"run {run_id} has no target schema for {unit.name}")
    ctx.redis.hsetnx(run_key(run_id), "copying_at", str(time.time()))
    ctx.progress.unit(run_id, unit.name, state="running", worker=worker)
    result = copy.copy_table(
        ctx.s,
        unit,
        snapshot_id.decode(),
        lambda: ctx.lock.assert_held(run_id),
        target_schema,
    )
    ctx.progress.unit(
        run_id,
        unit.name,
        state="done",
        rows=result.rows,
        bytes=result.bytes,
        spilled=result.spilled,
        seconds=result.seconds,
        worker=worker,
    )
    return {"table": unit.name, "rows": result.rows, "bytes": result.bytes}
