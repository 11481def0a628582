"""Replication phases, called by the thin tasks in :mod:`pagila_tasks.tasks`.

``prepare``: snapshot, catalog, plan, target schema (pre-data). ``copy_table``: one unit.
``finish``: post-data, sequences, materialized views, verification, audit, lock. ``fail``: the
errback.
Each phase logs one ``STEP`` line with the run id.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import (
    audit,
    catalog,
    copy,
    fkeys,
    plan,
    schema,
    sequences,
    snapshot,
    sqlfiles,
    verify,
)
from pagila_tasks.config import Settings
from pagila_tasks.context import Context
from pagila_tasks.db import connect, connection
from pagila_tasks.errors import PoisonMessage, ReplicationError, SnapshotLost, UsageError
from pagila_tasks.progress import RECORD_TTL, TERMINAL, run_key, table_totals
from pagila_tasks.snapshot import snapshot_cursor

log = logging.getLogger(__name__)


def _target_tables(cur: psycopg2.extensions.cursor, tables: list[plan.Table]) -> list[str]:
    missing = []
    for t in tables:
        cur.execute("SELECT to_regclass(%s)", (sql.Identifier(t.schema, t.name).as_string(cur),))
        if cur.fetchone()[0] is None:
            missing.append(t.qualified)
    return missing


def prepare(ctx: Context, run_id: str, requested: list[str] | None) -> list[plan.Unit]:
    """Snapshot, plan and target schema; returns the units the chord fans out."""
    s = ctx.s
    ctx.lock.assert_held(run_id)
    ctx.progress.set_state(run_id, "running")
    log.info("STEP prepare %s: export snapshot", run_id)
    snapshot_id = snapshot.start_holder(run_id, ctx.redis)
    with snapshot_cursor(s, snapshot_id, f"pagila-prepare {run_id}") as cur:
        source_version = int(cur.connection.server_version)
        log.info("STEP prepare %s: read the source catalog", run_id)
        tables = catalog.select_tables(cur, s.schemas, requested)
        spans = {}
        for t in plan.tables_to_split(tables, s.split_rows):
            span = catalog.key_span(cur, t)
            if span:
                spans[t.qualified] = span
    units = plan.plan_units(tables, s.split_rows, spans)
    subset = requested is not None
    tgt = connect(s.target_dsn, s, f"pagila-prepare {run_id}")
    try:
        audit.ensure(tgt, "replication")
        if subset:
            with tgt.cursor() as cur:
                missing = _target_tables(cur, tables)
                if missing:
                    raise UsageError(
                        f"the target has no table {', '.join(missing)}: run a full replicate first"
                    )
                log.info("STEP prepare %s: drop foreign keys touching the chosen tables", run_id)
                names = [sql.Identifier(t.schema, t.name).as_string(cur) for t in tables]
                cur.execute(sqlfiles.query("foreign_keys_touching"), {"tables": names})
                touching = [fkeys.ForeignKey(*row) for row in cur.fetchall()]
            ctx.redis.hset(
                run_key(run_id), "foreign_keys", json.dumps([fk.as_list() for fk in touching])
            )
            ctx.lock.assert_held(run_id)
            fkeys.drop(tgt, touching)
        else:
            log.info("STEP prepare %s: dump the source schema", run_id)
            archive = schema.dump(s, snapshot_id, source_version)
            ctx.redis.set(f"{run_key(run_id)}:schema", archive, ex=RECORD_TTL)
            log.info(
                "STEP prepare %s: reset target schemas %s, restore pre-data", run_id, s.schemas
            )
            ctx.lock.assert_held(run_id)
            schema.reset_target(tgt, s.schemas)
            schema.restore(s, archive, "pre-data", 1, source_version)
    finally:
        tgt.close()
    ctx.progress.set_state(
        run_id,
        "running",
        unit_names=[u.name for u in units],
        tables=sorted({f"{u.schema}.{u.table}" for u in units}),
        subset=subset,
        source_version=source_version,
    )
    for u in units:
        ctx.progress.unit(run_id, u.name, state="queued", table=f"{u.schema}.{u.table}")
    log.info("STEP prepare %s: %d units planned", run_id, len(units))
    return units


def copy_table(ctx: Context, run_id: str, args: dict[str, Any], worker: str) -> dict[str, Any]:
    """Copy one unit inside the run's snapshot, refusing to commit without the run lock.

    Deliveries are counted per unit: a unit whose worker keeps dying (so no retry policy sees
    it fail) is given up after ``PAGILA_RETRY_MAX + 3`` deliveries.
    """
    unit = plan.Unit.from_args(args)
    deliveries = ctx.redis.hincrby(run_key(run_id), f"deliveries:{unit.name}", 1)
    if deliveries > ctx.s.retry_max + 3:
        error = f"{unit.name} was delivered {deliveries} times (its worker keeps dying); giving up"
        ctx.progress.unit(run_id, unit.name, state="failed", error=error)
        raise PoisonMessage(error)
    record = ctx.record(run_id)
    if record.get("state") in TERMINAL:
        raise ReplicationError(
            f"run {run_id} is already {record['state']}; copy of {unit.name} dropped"
        )
    if record.get("cancel_requested"):
        raise ReplicationError(f"run {run_id} was cancelled")
    snapshot_id = ctx.redis.hget(run_key(run_id), "snapshot")
    if not snapshot_id:
        raise SnapshotLost(
            f"run {run_id} has no snapshot (its holder never started or Redis lost it)"
        )
    ctx.progress.unit(run_id, unit.name, state="running", worker=worker)
    snapshot_id_text = snapshot_id.decode()
    result = copy.copy_table(ctx.s, unit, snapshot_id_text, lambda: ctx.lock.assert_held(run_id))
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


def _audit(
    ctx: Context,
    run_id: str,
    record: dict[str, Any],
    succeeded: bool,
    error: str | None,
    detail: list[dict[str, Any]],
) -> bool:
    units = record.get("units", {})
    row = {
        "run_id": run_id,
        "started_at": record.get("started_at") or record.get("submitted_at"),
        "succeeded": succeeded,
        "tables": len(record.get("tables") or []),
        "rows": sum(int(u.get("rows", 0)) for u in units.values()),
        "bytes": sum(int(u.get("bytes", 0)) for u in units.values()),
        "error": error,
        "detail": json.dumps(detail),
    }
    with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
        audit.ensure(conn, "replication")
        inserted = audit.insert_replication(conn, row)
        conn.commit()
        return inserted


def _audited(ctx: Context, run_id: str) -> bool:
    with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
        audit.ensure(conn, "replication")
        return audit.replication_recorded(conn, run_id)


def finish(ctx: Context, run_id: str) -> dict[str, Any]:
    """The chord's callback: post-data, sequences, matviews, verification, audit, lock."""
    s = ctx.s
    record = ctx.record(run_id)
    if record.get("state") in TERMINAL or _audited(ctx, run_id):
        log.info(
            "STEP finish %s: already finished (%s); nothing to do", run_id, record.get("state")
        )
        ctx.progress.finish_once(run_id, "succeeded")
        ctx.lock.release(run_id)
        return {"run_id": run_id, "state": ctx.record(run_id).get("state")}
    ctx.lock.assert_held(run_id)
    snapshot_id = (ctx.redis.hget(run_key(run_id), "snapshot") or b"").decode()
    source_version = int(record.get("source_version") or 0)
    subset = bool(record.get("subset"))
    tables = [tuple(t.split(".", 1)) for t in record.get("tables") or []]
    ctx.progress.set_state(
        run_id, "running", phase="finish", finish_started_at=datetime.now(UTC).isoformat()
    )
    with snapshot_cursor(s, snapshot_id, f"pagila-finish {run_id}") as src:
        seq_values = sequences.read(src, s.schemas)
        matviews = [] if subset else catalog.matviews(src, s.schemas, only_populated=True)
        if subset:
            stored = json.loads(ctx.redis.hget(run_key(run_id), "foreign_keys") or b"[]")
            foreign = [fkeys.ForeignKey(*row) for row in stored]
        else:
            foreign = fkeys.read(src, s.schemas)
    log.info("STEP finish %s: verification (checksums of both sides)", run_id)
    # Ordered by what each step needs (measured in docs/benchmarks.md): the target's rows are
    # final once the chord fires, so they are measured first, before post-data's ALTER TABLEs
    # would queue behind (and in front of) these reads. The source is measured in the run's
    # snapshot on its own server, so that thread runs on into post-data. Foreign keys come last,
    # validated side by side (pagila_tasks.fkeys) beside the materialized-view refresh, which
    # needs the indexes, not the foreign keys.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"finish-{run_id}") as pool:
        src_measures = pool.submit(_measure_source, s, snapshot_id, run_id, tables)
        target_measures = _measure_target(s, run_id, tables)
        if not subset:
            log.info("STEP finish %s: post-data but foreign keys (pg_restore -j2)", run_id)
            _post_data(ctx, run_id, source_version)
        log.info(
            "STEP finish %s: %d foreign keys validated side by side; sequences, materialized views",
            run_id,
            len(foreign),
        )
        foreign_done = pool.submit(_foreign_keys, ctx, run_id, foreign)
        target_seqs = _sequences_and_matviews(ctx, run_id, seq_values, matviews)
        foreign_done.result()
        checks = verify.combine(src_measures.result(), target_measures)
    bad = [c.table for c in checks if not c.ok]
    bad_seqs = [k for k, v in seq_values.items() if target_seqs.get(k) != v]
    totals = table_totals(record)
    detail = [asdict(c) | {"ok": c.ok, **_unit_info(totals, c.table)} for c in checks]
    if bad or bad_seqs:
        raise ReplicationError(
            "verification failed: "
            + "; ".join(
                ([f"tables differ: {', '.join(bad)}"] if bad else [])
                + ([f"sequences differ: {', '.join(bad_seqs)}"] if bad_seqs else [])
            )
        )
    ctx.lock.assert_held(run_id)
    _audit(ctx, run_id, ctx.record(run_id), True, None, detail)
    ctx.progress.set_state(run_id, "running", verification=detail, sequences=len(seq_values))
    ctx.progress.finish_once(run_id, "succeeded")
    ctx.lock.release(run_id)
    log.info("STEP finish %s: succeeded, %d tables verified", run_id, len(checks))
    return {"run_id": run_id, "state": "succeeded", "tables": len(checks)}


def _post_data(ctx: Context, run_id: str, source_version: int) -> None:
    """Indexes, constraints and triggers: the post-data section without its foreign keys."""
    s = ctx.s
    archive = ctx.redis.get(f"{run_key(run_id)}:schema")
    if archive is None:
        raise ReplicationError(f"run {run_id}: the schema dump is gone from Redis")
    with connection(s.target_dsn, s, f"pagila-finish {run_id}") as tgt:
        with tgt.cursor() as cur:
            earlier = fkeys.read(cur, s.schemas)
        if earlier:  # a redelivered callback: --clean cannot drop keys these depend on
            ctx.lock.assert_held(run_id)
            fkeys.drop(tgt, earlier)
    schema.restore(s, archive, "post-data", 2, source_version, foreign_keys=False)


def _foreign_keys(ctx: Context, run_id: str, foreign: list[fkeys.ForeignKey]) -> None:
    """Add the run's foreign keys NOT VALID, then validate them two at a time."""
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-finish {run_id}") as tgt:
        ctx.lock.assert_held(run_id)
        pending = fkeys.add(tgt, foreign)
    fkeys.validate(s, pending, 2, f"pagila-fk {run_id}")


def _sequences_and_matviews(
    ctx: Context,
    run_id: str,
    seq_values: dict[str, tuple[int, bool]],
    matviews: list[tuple[str, str]],
) -> dict[str, tuple[int, bool]]:
    """Set the target's sequences, refresh its materialized views; the sequences read back."""
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-finish {run_id}") as conn:
        with conn.cursor() as cur:
            sequences.apply(cur, seq_values)
            for mschema, mview in matviews:
                cur.execute(
                    sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(mschema, mview))
                )
            ctx.lock.assert_held(run_id)
            conn.commit()
            target = sequences.read(cur, s.schemas)
        conn.commit()
    return target


def _measure_source(
    s: Settings, snapshot_id: str, run_id: str, tables: list[tuple[str, str]]
) -> dict[str, tuple[int, str | None]]:
    with snapshot_cursor(s, snapshot_id, f"pagila-verify-src {run_id}") as cur:
        return verify.measure_all(cur, tables, s.verify_checksums)


def _measure_target(
    s: Settings, run_id: str, tables: list[tuple[str, str]]
) -> dict[str, tuple[int, str | None]]:
    measures = {}
    with connection(s.target_dsn, s, f"pagila-verify-tgt {run_id}") as conn, conn.cursor() as cur:
        for schema_name, table in tables:
            measures[f"{schema_name}.{table}"] = verify.measure(
                cur, schema_name, table, s.verify_checksums
            )
            conn.commit()  # hold no table's lock longer than its own measure
    return measures


def _unit_info(totals: dict[str, dict[str, Any]], table: str) -> dict[str, Any]:
    """Bytes, spill, workers and seconds of a table's units, for the audit detail."""
    t = totals.get(table, {})
    keys = ("bytes", "spilled", "workers", "seconds")
    defaults: dict[str, Any] = {"bytes": 0, "spilled": False, "workers": [], "seconds": 0.0}
    return {k: t.get(k, defaults[k]) for k in keys}


def fail(ctx: Context, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """The errback: one failed audit row naming the tables and errors, then the lock is freed."""
    record = ctx.progress.get(run_id) or {"units": {}}
    if record.get("state") in TERMINAL:
        return {"run_id": run_id, "state": record.get("state")}
    failed = {
        name: u.get("error", "")
        for name, u in record.get("units", {}).items()
        if u.get("state") in ("failed", "retrying") and u.get("error")
    }
    parts = []
    if record.get("cancel_requested"):
        parts.append("cancelled by request")
    if failed:
        parts.append("; ".join(f"{name}: {err}" for name, err in sorted(failed.items())))
    if reason:
        parts.append(reason)
    if record.get("error"):
        parts.append(str(record["error"]))
    error = ctx.s.scrub(" | ".join(dict.fromkeys(parts)) or "a task failed")
    state = "cancelled" if record.get("cancel_requested") else "failed"
    detail = [{"table": name, "error": err} for name, err in sorted(failed.items())]
    try:
        _audit(ctx, run_id, record, False, error, detail)
    except Exception as exc:  # the target may be the thing that broke: still free the lock
        log.error("run %s: could not write the failed audit row: %s", run_id, ctx.s.scrub(str(exc)))
        error += f" (audit row not written: {ctx.s.scrub(str(exc))})"
    if ctx.progress.finish_once(run_id, state, error):
        for name, u in record.get("units", {}).items():
            if u.get("state") in ("queued", "running"):
                left = "not run" if u["state"] == "queued" else "abandoned"
                ctx.progress.unit(run_id, name, state=left if state == "failed" else state)
    ctx.lock.release(run_id)
    log.error("STEP fail %s: %s: %s", run_id, state, error)
    return {"run_id": run_id, "state": state, "error": error}
