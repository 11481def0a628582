"""The replication's callback (``finish``) and errback (``fail``).

``finish``: the target's rows measured first (the chord fired, so they are final) while the
source is measured in the snapshot beside; post-data without foreign keys, then the foreign
keys added NOT VALID, all *as live* in one transaction; the keys validated side by side while
sequences are set and materialized views refreshed (as live again); verification; then the
switch (:mod:`.switch`) writes the ledger row and makes the copy live; the previous
copy is dropped within a bounded wait; the lock is freed.

Every step is idempotent: a step that commits records itself in
``pagila_support.replication_steps`` in the same transaction, so a redelivered callback skips
it; the ledger row, written in the switch's transaction, marks a run whose copy went live.
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

from pagila_tasks.base import names
from pagila_tasks.base.errors import Refused, ReplicationError
from pagila_tasks.config import Settings
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import (
    catalog,
    fkeys,
    keep,
    keepplan,
    largeobjects,
    protect,
    schema,
    sequences,
    staging,
    switch,
    verify,
)
from pagila_tasks.replication.replicate import DROP_WAIT_MS, layout_for
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context
from pagila_tasks.run.progress import TERMINAL, run_key, table_totals

log = logging.getLogger(__name__)

Measures = dict[str, tuple[int, str | None]]


def finish(ctx: Context, run_id: str) -> dict[str, Any]:
    """The chord's callback: post-data, keys, sequences, matviews, verification, switch."""
    s = ctx.s
    record = ctx.progress.get(run_id)
    if record is None or record.get("kind") != "replicate":
        raise Refused(f"no replication run {run_id} was submitted; nothing done")
    row = _ledger_row(ctx, run_id)
    if record.get("state") in TERMINAL or row is not None:
        state = "succeeded" if row is None or row[0] else "failed"
        log.info("STEP finish %s: already finished (%s); nothing to do", run_id, state)
        ctx.progress.finish_once(run_id, state)
        ctx.lock.release(run_id)
        return {"run_id": run_id, "state": ctx.record(run_id).get("state")}
    ctx.lock.assert_held(run_id)
    layout = layout_for(ctx, record)
    snapshot_id = (ctx.redis.hget(run_key(run_id), "snapshot") or b"").decode()
    subset = bool(record.get("subset"))
    tables = [(str(a), str(b)) for a, b in record.get("table_keys") or []]
    targets = layout.targets()
    ctx.progress.set_state(
        run_id, "running", phase="finish", finish_started_at=datetime.now(UTC).isoformat()
    )
    with snapshot_cursor(s, snapshot_id, f"pagila-finish {run_id}") as src:
        seq_values = sequences.read(src, layout.schemas)
        matviews = [] if subset else catalog.matviews(src, layout.schemas, only_populated=True)
        if subset:
            foreign = [fkeys.ForeignKey(*row) for row in record.get("foreign_keys") or []]
        else:
            foreign = fkeys.read(src, layout.schemas)
        manifest = None if subset else keep.source_manifest(src, layout.schemas)
    large_objects = bool(record.get("large_objects"))
    log.info("STEP finish %s: verification (checksums of both sides)", run_id)
    # Ordered by what each step needs (measured in docs/benchmarks.md): the target's rows are
    # final once the chord fires, so they are measured first, before post-data's ALTER TABLEs
    # would queue behind (and in front of) these reads. The source is measured in the run's
    # snapshot on its own server, so that thread runs on into post-data. Foreign keys come last,
    # validated side by side beside the materialized-view refresh, which needs the indexes.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"finish-{run_id}") as pool:
        src_measures = pool.submit(_measure_source, s, snapshot_id, run_id, tables, large_objects)
        target_measures = _measure_target(s, run_id, tables, targets, large_objects)
        log.info("STEP finish %s: post-data (indexes two at a time, the rest as live)", run_id)
        pending = _post_data(ctx, run_id, record, layout, foreign)
        log.info(
            "STEP finish %s: %d foreign keys validated side by side; sequences, materialized views",
            run_id,
            len(pending),
        )
        validated = pool.submit(fkeys.validate, s, pending, 2, f"pagila-fk {run_id}", targets)
        target_seqs = _sequences_and_matviews(ctx, run_id, layout, seq_values, matviews)
        validated.result()
        checks = verify.combine(src_measures.result(), target_measures)
    bad = [c.table for c in checks if not c.ok]
    bad_seqs = [str(k) for k, v in seq_values.items() if target_seqs.get(k) != v]
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
    ctx.progress.set_state(run_id, "running", verification=detail, sequences=len(seq_values))
    kept = None if manifest is None else _keep(ctx, run_id, layout, manifest)
    done = switch.run(
        s,
        run_id,
        layout,
        _audit_row(ctx.record(run_id), run_id, True, None, detail),
        lambda: guard.still_ours(ctx, run_id),
        large_objects or not subset,
        switch.Kept(kept, manifest) if kept is not None and manifest is not None else None,
    )
    ctx.progress.set_state(
        run_id,
        "running",
        switched_at=done.at.isoformat(),
        switch_ms=done.held_ms,
        target_state="switched" if layout.swap else "replaced in place",
    )
    _drop_old(ctx, run_id)  # before "succeeded": a run reported ended holds nothing any more
    ctx.lock.release(run_id)
    ctx.progress.finish_once(run_id, "succeeded")
    log.info("STEP finish %s: succeeded, %d tables verified", run_id, len(checks))
    return {"run_id": run_id, "state": "succeeded", "tables": len(checks)}


def _ledger_row(ctx: Context, run_id: str) -> tuple[Any, ...] | None:
    """The run's ledger row on the target, if it has one (its copy went live, or it failed)."""
    with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
        support.ensure(conn, "replication")
        return support.replication_row(conn, run_id)


def _step_done(cur: psycopg2.extensions.cursor, run_id: str, step: str) -> bool:
    return support.step_done(cur, run_id, step)


def _record_step(cur: psycopg2.extensions.cursor, run_id: str, step: str) -> None:
    """Record a finishing step in the transaction that did it (see :func:`_step_done`)."""
    support.record_step(cur, run_id, step)


def _post_data(
    ctx: Context,
    run_id: str,
    record: dict[str, Any],
    layout: staging.Layout,
    foreign: list[fkeys.ForeignKey],
) -> list[fkeys.ForeignKey]:
    """Indexes, constraints, triggers and the foreign keys (NOT VALID).

    The indexes and keys that name only their own table are built two at a time on the build
    schemas (:func:`.schema.split_post_data`); the rest of post-data and the foreign
    keys run as live, in one transaction. Returns the keys left to validate. Done once per run:
    a redelivered callback finds the step recorded and only validates again (a no-op for keys
    already valid); one that died between the two parts finds the indexes built.
    """
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-finish {run_id}") as conn, conn.cursor() as cur:
        if _step_done(cur, run_id, "post-data"):
            return [fk for fk in foreign if fk.validated]
        conn.commit()
        text = "" if record.get("subset") else _post_data_script(ctx, run_id, record)
        apart, rest = schema.split_post_data(text, layout.targets())
        _build_apart(ctx, run_id, apart)
        if s.maintenance_work_mem:  # index builds and key checks size their memory by it
            cur.execute("SET maintenance_work_mem = %s", (s.maintenance_work_mem,))
        with staging.as_live(cur, layout):
            if rest.strip():
                schema.run(cur, rest)
            cur.execute("SET search_path = pg_catalog")
            pending = fkeys.add(cur, foreign)
        _record_step(cur, run_id, "post-data")
        guard.still_ours(ctx, run_id)
        conn.commit()
    return pending


def _post_data_script(ctx: Context, run_id: str, record: dict[str, Any]) -> str:
    """The post-data section of the run's schema dump, without foreign keys, as SQL."""
    archive = ctx.redis.get(f"{run_key(run_id)}:schema")
    if archive is None:
        raise ReplicationError(f"run {run_id}: the schema dump is gone from Redis")
    return schema.script(
        ctx.s,
        archive,
        "post-data",
        int(record.get("source_version") or 0),
        int(record.get("target_version") or 0),
        foreign_keys=False,
    )


def _build_apart(ctx: Context, run_id: str, statements: list[str]) -> None:
    """Run each statement in its own transaction, two at a time; one an earlier attempt of this
    callback already committed (the object exists) is skipped."""
    s = ctx.s

    def one(statement: str) -> None:
        with warm.borrow(s.target_dsn, s, f"pagila-index {run_id}") as conn:
            with conn.cursor() as cur:
                if s.maintenance_work_mem:
                    cur.execute("SET LOCAL maintenance_work_mem = %s", (s.maintenance_work_mem,))
                try:
                    cur.execute(statement)
                except (psycopg2.errors.DuplicateTable, psycopg2.errors.DuplicateObject):
                    conn.rollback()
                    return
            guard.still_ours(ctx, run_id)
            conn.commit()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"index-{run_id}") as pool:
        for done in [pool.submit(one, st) for st in statements]:
            done.result()


def _keep(
    ctx: Context, run_id: str, layout: staging.Layout, manifest: keepplan.Manifest
) -> keepplan.KeepPlan:
    """Build on the new copy what the target's users added to the replicated tables, and ahead
    under temporary names their materialized views and constraints elsewhere (checked against
    the new rows), as live, before the switch. A swap reads what to keep now (the live copy is
    what readers use until the switch); in place, prepare read it before its reset. Done once
    per run (a recorded step, with the plan the switch then carries out)."""
    s = ctx.s
    options = guard.options(ctx.record(run_id))
    drop = _drops_dependents(ctx, run_id)
    with connection(s.target_dsn, s, f"pagila-keep {run_id}") as conn, conn.cursor() as cur:
        saved = keep.load(cur, run_id)
        if _step_done(cur, run_id, "keep-build") and saved is not None:
            return saved
        if layout.swap or saved is None:
            mine = protect.replaceable(
                cur, layout.schemas, bool(options.get("overwrite")) or s.overwrite_target
            )
            token = names.run_token(run_id)
            kept = keep.assess(cur, manifest, layout.schemas, layout.swap, token, mine)
            keepplan.check(kept, drop, keepplan.how_lost(layout.swap))
        else:
            kept = saved
        log.info("STEP finish %s: keep %d objects the target's users built", run_id, len(kept.kept))
        if kept.notes:
            log.warning("run %s: kept in part: %s", run_id, "; ".join(kept.notes))
            ctx.progress.set_state(run_id, "running", keep_notes=list(kept.notes))
        if s.maintenance_work_mem:
            cur.execute("SET maintenance_work_mem = %s", (s.maintenance_work_mem,))
        alone, rest = keepplan.apart(kept.build, _quoted_builds(cur, layout))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"keep-{run_id}") as pool:
            indexes = pool.submit(_build_apart, ctx, run_id, alone)  # two at a time, beside
            with staging.as_live(cur, layout):
                keep.run_steps(cur, rest, "on the new copy, before the switch")
            indexes.result()
        keep.save(cur, run_id, kept)
        _record_step(cur, run_id, "keep-build")
        guard.still_ours(ctx, run_id)
        conn.commit()
    return kept


def _drops_dependents(ctx: Context, run_id: str) -> bool:
    """``--drop-dependents`` for this run: its option, or the workers' own setting (as prepare
    decides it)."""
    return bool(guard.options(ctx.record(run_id)).get("drop_dependents")) or ctx.s.drop_dependents


def _quoted_builds(cur: psycopg2.extensions.cursor, layout: staging.Layout) -> dict[str, str]:
    """Each live schema as PostgreSQL quotes it in a definition -> its build schema, quoted; a
    swap's only (in place, the build is the live schema: nothing is built apart)."""
    if not layout.swap:
        return {}
    live = list(layout.schemas)
    cur.execute(
        "SELECT quote_ident(s), quote_ident(b) FROM unnest(%s::text[], %s::text[]) AS x(s, b)",
        (live, [layout.build(x) for x in live]),
    )
    return dict(cur.fetchall())


def _sequences_and_matviews(
    ctx: Context,
    run_id: str,
    layout: staging.Layout,
    seq_values: sequences.Values,
    matviews: list[tuple[str, str]],
) -> sequences.Values:
    """Set the copy's sequences and refresh its materialized views, as live (a matview's query
    may call functions whose bodies name tables by their live names); the sequences read back.
    """
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-finish {run_id}") as conn, conn.cursor() as cur:
        with staging.as_live(cur, layout):
            sequences.apply(cur, seq_values)
            for mschema, mview in matviews:
                cur.execute(
                    sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(mschema, mview))
                )
            target = sequences.read(cur, layout.schemas)
        ctx.lock.assert_held(run_id)
        conn.commit()
    return target


def _measure_source(
    s: Settings, snapshot_id: str, run_id: str, tables: list[tuple[str, str]], los: bool
) -> Measures:
    with snapshot_cursor(s, snapshot_id, f"pagila-verify-src {run_id}") as cur:
        measures = verify.measure_all(cur, tables, s.verify_checksums)
        if los:
            measures[largeobjects.NAME] = largeobjects.measure(cur, staged=False)
        return measures


def _measure_target(
    s: Settings, run_id: str, tables: list[tuple[str, str]], targets: dict[str, str], los: bool
) -> Measures:
    measures = {}
    with connection(s.target_dsn, s, f"pagila-verify-tgt {run_id}") as conn, conn.cursor() as cur:
        for table in tables:
            measures.update(verify.measure_all(cur, [table], s.verify_checksums, targets))
            conn.commit()  # hold no table's lock longer than its own measure
        if los:
            measures[largeobjects.NAME] = largeobjects.measure(cur, staged=True)
            conn.commit()
    return measures


def _unit_info(totals: dict[str, dict[str, Any]], table: str) -> dict[str, Any]:
    """Bytes, spill, workers and seconds of a table's units, for the audit detail."""
    t = totals.get(table, {})
    defaults: dict[str, Any] = {"bytes": 0, "spilled": False, "workers": [], "seconds": 0.0}
    return {k: t.get(k, default) for k, default in defaults.items()}


def _audit_row(
    record: dict[str, Any],
    run_id: str,
    succeeded: bool,
    error: str | None,
    detail: list[dict[str, Any]],
    target_state: str | None = None,
) -> dict[str, Any]:
    units = record.get("units", {})
    return {
        "run_id": run_id,
        "started_at": record.get("started_at") or record.get("submitted_at"),
        "succeeded": succeeded,
        "tables": len(record.get("tables") or []),
        "rows": sum(int(u.get("rows", 0)) for u in units.values()),
        "bytes": sum(int(u.get("bytes", 0)) for u in units.values()),
        "error": error,
        "detail": json.dumps(detail),
        "switched_at": None,
        "switch_ms": None,
        "target_state": target_state,
    }


def _drop_old(ctx: Context, run_id: str) -> None:
    """Drop the copy this run replaced, waiting a bounded time for readers still on it."""
    s = ctx.s
    try:
        with connection(s.target_dsn, s, f"pagila-finish {run_id}") as conn:
            with conn.cursor() as cur:
                old = staging.registered(cur, "old", run_id)
            conn.commit()
            drop = _drops_dependents(ctx, run_id)
            left = staging.drop(conn, old, DROP_WAIT_MS, take_dependents=drop)
    except psycopg2.Error as exc:  # the copy is live: a leftover is the next run's to drop
        log.warning("run %s: previous copy not dropped: %s", run_id, s.scrub(str(exc)))
        return
    if left:
        log.warning("run %s: previous copy still in use, left for the next run: %s", run_id, left)


def _target_state(record: dict[str, Any]) -> str:
    """What a failed run left on the target, for its ledger row and ``status``."""
    if record.get("replace") == "in-place" and record.get("built"):
        return "partly replaced"
    return "unchanged"


def _put_back(cur: psycopg2.extensions.cursor, run_id: str) -> list[str]:
    """What an in-place run took down around its schemas, made again over what it left (each
    object on its own; when something could not be made, the plan stays for the next run to
    try again); a swap's plan is let go."""
    cur.execute("SELECT to_regclass('pagila_support.kept_objects') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    kept = keep.load(cur, run_id)
    if kept is None:
        return []
    missed = keep.put_back(cur, kept)
    if not missed:
        keep.forget(cur, run_id)
    return missed


def fail(ctx: Context, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """The errback: one failed audit row naming the tables and errors; staging dropped; lock."""
    record = ctx.progress.get(run_id)
    if record is None or record.get("kind") != "replicate":
        log.warning("fail %s: no such replication run; nothing done", run_id)
        return {"run_id": run_id, "state": "unknown"}
    if record.get("state") in TERMINAL:
        return {"run_id": run_id, "state": record.get("state")}
    try:
        row = _ledger_row(ctx, run_id)
    except psycopg2.Error:
        row = None  # the target may be what broke: the run did not switch then
    if row is not None and row[0]:
        ctx.progress.finish_once(run_id, "succeeded")  # its copy went live before the error
        ctx.lock.release(run_id)
        return {"run_id": run_id, "state": "succeeded"}
    failed = {
        name: u.get("error", "")
        for name, u in record.get("units", {}).items()
        if u.get("state") in ("failed", "retrying") and u.get("error")
    }
    parts = []
    if record.get("cancel_requested"):
        parts.append("cancelled by request")
    if record.get("error"):  # the run's first error first; later ones are added
        parts.append(str(record["error"]))
    if failed:
        parts.append("; ".join(f"{name}: {err}" for name, err in sorted(failed.items())))
    if reason:
        parts.append(reason)
    parts += [str(e) for e in record.get("later_errors") or []]
    error = ctx.s.scrub(" | ".join(dict.fromkeys(parts)) or "a task failed")
    state = "cancelled" if record.get("cancel_requested") else "failed"
    target_state = _target_state(record)
    detail = [{"table": name, "error": err} for name, err in sorted(failed.items())]
    try:
        with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
            support.ensure(conn, "replication")
            row_data = _audit_row(record, run_id, False, error, detail, target_state)
            support.insert_replication(conn, row_data)
            conn.commit()
            with conn.cursor() as cur:
                ours = staging.registered(cur, "stage", run_id)
                missed = _put_back(cur, run_id)
            conn.commit()
            if missed:
                error += f" (not put back: {'; '.join(missed)})"
            staging.drop(conn, ours, DROP_WAIT_MS, keep_extensions=False)
    except Exception as exc:  # the target may be the thing that broke: still free the lock
        log.error("run %s: could not write the failed audit row: %s", run_id, ctx.s.scrub(str(exc)))
        error += f" (audit row not written: {ctx.s.scrub(str(exc))})"
    ctx.progress.set_state(run_id, record.get("state") or "queued", target_state=target_state)
    if ctx.progress.finish_once(run_id, state, error):
        for name, u in record.get("units", {}).items():
            if u.get("state") in ("queued", "running"):
                left = "not run" if u["state"] == "queued" else "abandoned"
                ctx.progress.unit(run_id, name, state=left if state == "failed" else state)
    ctx.lock.release(run_id)
    log.error("STEP fail %s: %s (target %s): %s", run_id, state, target_state, error)
    return {"run_id": run_id, "state": state, "error": error}
