"""The replication's callback (``finish``) and errback (``fail``).

``finish``: the target's rows measured first (the chord fired, so they are final) while the
source is measured in the snapshot beside; post-data (:mod:`.postdata`), then the foreign keys
validated side by side while sequences are set and materialized views refreshed; verification
(:mod:`.verify`); what the target's users built made on the new copy; then the switch
(:mod:`.switch`) writes the ledger row and makes the copy live; the previous copy is dropped
within a bounded wait; the run ends (:mod:`pagila_tasks.run.lifecycle`).

Every step is idempotent: a step that commits records itself in the bookkeeping schema in the
same transaction, so a redelivered callback skips it; the ledger row, written in the switch's
transaction, marks a run whose copy went live.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import Refused, ReplicationError
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import (
    catalog,
    changes,
    fkeys,
    keep,
    keepplan,
    postdata,
    proof,
    sequences,
    snapshot,
    staging,
    switch,
    verify,
)
from pagila_tasks.replication.snapshot import snapshot_cursor
from pagila_tasks.run import guard, lifecycle, recorded
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import (
    ReplicateOptions,
    ReplicationPlan,
    Resolved,
    Run,
    RunState,
    Switch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFacts:
    """What the callback reads in the run's snapshot before it builds anything."""

    sequences: sequences.Values
    matviews: list[tuple[str, str]]
    foreign_keys: list[fkeys.ForeignKey]
    manifest: keepplan.Manifest | None


def finish(ctx: Context, run_id: str) -> dict[str, Any]:
    """The chord's callback: post-data, keys, sequences, matviews, verification, switch."""
    run = _replication(ctx, run_id)
    if (ended := _already_finished(ctx, run)) is not None:
        return ended
    plan = _plan_of(ctx, run)
    if plan.unchanged or plan.applies:  # no new copy: nothing, or the changes in place
        return (_unchanged if plan.unchanged else _applied)(ctx, run, plan)
    layout = staging.layout_of(plan)
    ctx.record.finishing(run_id)
    ctx.step(run_id, "finish", "read sequences, keys and views in the snapshot")
    source = _read_source(ctx, run, plan, layout)
    ctx.step(run_id, "finish", "verification (checksums of both sides) beside post-data")
    checks, target_seqs, mark = _build_and_measure(ctx, run, plan, layout, source)
    verify.require(checks, source.sequences, target_seqs)
    detail = verify.detail(checks, run.table_totals(), run.how_built())
    ctx.record.verified(run_id, detail, len(source.sequences))
    chosen = _options(ctx, run)
    manifest = source.manifest
    kept = postdata.keep_build(ctx, run_id, layout, manifest, chosen) if manifest else None
    ctx.step(run_id, "finish", "switch")
    row = ledger_row(run, True, None, detail)
    carried = switch.Kept(kept, manifest) if kept and manifest else None
    moves_objects = plan.large_objects > 0 or not plan.subset
    done = switch.run(ctx, run_id, layout, row, moves_objects, carried)
    ctx.record.switched(run_id, Switch(done.target_state, done.at.isoformat(), done.held_ms))
    _after_switch(ctx, run_id, plan, chosen, (checks, mark))  # ends holding nothing
    lifecycle.end(ctx, run_id, RunState.SUCCEEDED)
    ctx.step(run_id, "finish", f"succeeded, {len(checks)} tables verified")
    return {"run_id": run_id, "state": "succeeded", "tables": len(checks)}


def _unchanged(ctx: Context, run: Run, plan: ReplicationPlan) -> dict[str, Any]:
    """A run whose prepare proved the live copy equal to the source at the snapshot: its
    verdicts are the proof's; one ledger row, nothing built, nothing switched."""
    run_id = run.run_id
    checks = [verify.TableCheck(*p) for p in plan.proven]
    verify.require(checks, {}, {})
    detail = verify.detail(checks, {}, "kept")
    ctx.record.verified(run_id, detail, 0)
    row = ledger_row(run, True, None, detail, "unchanged")
    with warm.borrow(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
        support.ensure(conn, "replication")
        guard.before_commit(ctx, run_id)
        support.insert_replication(conn, row)
        with conn.cursor() as cur:
            since = {p[0]: plan.measured_at for p in plan.proven}
            was = recorded.sides(list(plan.proven), plan.origins, (plan.horizon, since))
            support.save_measures(cur, plan.schemas, plan.horizon, was.as_json())
        conn.commit()
    ctx.record.switched(run_id, Switch(target_state="unchanged"))
    lifecycle.end(ctx, run_id, RunState.SUCCEEDED)
    ctx.step(run_id, "finish", f"succeeded, nothing copied: {plan.reason}")
    return {"run_id": run_id, "state": "succeeded", "tables": len(checks), "copied": 0}


def _applied(ctx: Context, run: Run, plan: ReplicationPlan) -> dict[str, Any]:
    """A run that applies the rows that differ to the live copy in one transaction, verified
    inside it (:mod:`.changes`); its work tables dropped once it has ended (its submitter is
    told at once; what a drop could not take is the next run's leftover)."""
    run_id = run.run_id
    ctx.record.finishing(run_id)
    ctx.step(run_id, "finish", "apply the changes in place, verified before the commit")
    proven = {p[0]: (p[1], p[2], p[3], p[4]) for p in plan.proven}
    done = changes.apply(
        ctx,
        run_id,
        run.snapshot.id or "",
        plan.schemas,
        list(plan.changes),
        proven,
        lambda detail: ledger_row(run, True, None, detail, "changed in place"),
        run.table_totals(),
        (plan.horizon, plan.measured_at),
        plan.origins,
    )
    ctx.record.verified(run_id, done.detail, done.sequences)
    state = "changed in place"
    ctx.record.switched(run_id, Switch(state, done.at.isoformat(), done.held_ms))
    lifecycle.end(ctx, run_id, RunState.SUCCEEDED)
    ctx.step(run_id, "finish", f"succeeded, {state} in {done.held_ms:.1f} ms: {plan.reason}")
    changes.drop_work(ctx.s, run_id)  # after the end: nobody waits on it (a leftover is dropped)
    return {"run_id": run_id, "state": "succeeded", "tables": len(done.checks)}


def _after_switch(
    ctx: Context,
    run_id: str,
    plan: ReplicationPlan,
    chosen: Resolved,
    verified: tuple[list[verify.TableCheck], tuple[int, str | None]],
) -> None:
    """The new copy's schema fingerprint and measures recorded for the next run's proof (a
    whole run's; ``verified``: the verdicts and the target's mark taken before they were
    measured), then the copy it replaced dropped."""
    if plan.fingerprint and not plan.subset:
        checks, (since, where) = verified
        # a reused table's target measure is prepare's, older than the mark: measured next time
        held = {c.table: None if c.table in plan.reused_measures else since for c in checks}
        was = recorded.sides(
            [_verdict(c) for c in checks], (plan.origins[0], where), (plan.horizon, held)
        )
        proof.record(
            ctx.s,
            run_id,
            (plan.schemas, plan.fingerprint, plan.target_version),
            plan.horizon,
            was.as_json(),
        )
    _drop_old(ctx, run_id, chosen.drop_dependents)


def _verdict(c: verify.TableCheck) -> tuple[str, int, int, str | None, str | None]:
    return (c.table, c.source_rows, c.target_rows, c.source_checksum, c.target_checksum)


def _replication(ctx: Context, run_id: str) -> Run:
    run = lifecycle.current(ctx, run_id)
    if run is None or run.kind != "replicate":
        raise Refused(f"no replication run {run_id} was submitted; nothing done")
    return run


def _options(ctx: Context, run: Run) -> Resolved:
    """The run's options with the workers' settings filled in, as prepare resolved them."""
    options = run.typed_options
    if not isinstance(options, ReplicateOptions):
        raise ReplicationError(f"run {run.run_id} is not a replication")
    return options.resolve(ctx.s)


def _plan_of(ctx: Context, run: Run) -> ReplicationPlan:
    """The run's plan, once it is sure the run still holds the lock."""
    ctx.lock.assert_held(run.run_id)
    if run.plan is None:
        raise Refused(f"run {run.run_id} was never prepared; nothing done")
    return run.plan


def _already_finished(ctx: Context, run: Run) -> dict[str, Any] | None:
    """A redelivered callback of a run that ended, or whose ledger row exists (its copy went
    live, or it failed), ends it as that row says, and does nothing else."""
    row = _ledger_row(ctx, run.run_id)
    if not run.state.terminal and row is None:
        return None
    state = RunState.SUCCEEDED if row is None or row[0] else RunState.FAILED
    ctx.step(run.run_id, "finish", f"already finished ({state}); nothing to do")
    lifecycle.end(ctx, run.run_id, state)
    return {"run_id": run.run_id, "state": str(ctx.run(run.run_id).state)}


def _ledger_row(ctx: Context, run_id: str) -> tuple[Any, ...] | None:
    """The run's ledger row on the target, if it has one (its copy went live, or it failed)."""
    with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
        support.ensure(conn, "replication")
        return support.replication_row(conn, run_id)


def _read_source(
    ctx: Context, run: Run, plan: ReplicationPlan, layout: staging.Layout
) -> SourceFacts:
    """Sequences, populated materialized views, foreign keys and the source's manifest, in the
    snapshot (a ``--tables`` run: only the keys prepare dropped)."""
    with snapshot_cursor(ctx.s, run.snapshot.id or "", f"pagila-finish {run.run_id}") as src:
        if plan.subset:
            foreign = [fkeys.ForeignKey(*row) for row in plan.foreign_keys]
            return SourceFacts(sequences.read(src, layout.schemas), [], foreign, None)
        return SourceFacts(
            sequences.read(src, layout.schemas),
            catalog.matviews(src, layout.schemas, only_populated=True),
            fkeys.read(src, layout.schemas),
            keep.source_manifest(src, layout.schemas),
        )


def _build_and_measure(
    ctx: Context, run: Run, plan: ReplicationPlan, layout: staging.Layout, source: SourceFacts
) -> tuple[list[verify.TableCheck], sequences.Values, tuple[int, str | None]]:
    """Both sides measured, post-data, keys validated, sequences and matviews; the verdicts,
    the target's sequences and its mark taken before it was measured (recorded with them).

    Ordered by what each step needs (measured in docs/benchmarks.md): the target's rows are
    final once the chord fires, so they are measured first, before post-data's ALTER TABLEs
    would queue behind (and in front of) these reads. The source is measured in the run's
    snapshot on its own server, so that thread runs on into post-data. Foreign keys come last,
    validated side by side beside the materialized-view refresh, which needs the indexes.
    """
    s, run_id, targets = ctx.s, run.run_id, layout.targets()
    mark = snapshot.target_mark(s, f"pagila-finish {run_id}")  # the measures hold from it
    kept = plan.reused_measures  # proven on both sides by prepare: not read again
    tables = [t for t in plan.table_keys if names.display(*t) not in kept]
    los = plan.large_objects > 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"finish-{run_id}") as pool:
        snap = run.snapshot.id or ""
        src_measures = pool.submit(verify.measure_source, s, snap, run_id, tables, los)
        target_measures = verify.measure_target(s, run_id, tables, targets, los)
        ctx.step(run_id, "finish", "post-data (indexes two at a time, the rest as live)")
        pending = postdata.post_data(ctx, run_id, plan, layout, source.foreign_keys)
        ctx.step(run_id, "finish", f"{len(pending)} keys validated; sequences, matviews")
        check = functools.partial(guard.before_commit, ctx, run_id)
        name = f"pagila-fk {run_id}"
        validated = pool.submit(fkeys.validate, s, pending, 2, name, targets, check)
        seqs = postdata.sequences_and_matviews(
            ctx, run_id, layout, source.sequences, source.matviews
        )
        validated.result()
        source_side = src_measures.result() | kept
        order = [names.display(*t) for t in plan.table_keys]
        ordered = {n: source_side[n] for n in order + sorted(set(source_side) - set(order))}
        return verify.combine(ordered, target_measures | kept), seqs, mark


def ledger_row(
    run: Run,
    succeeded: bool,
    error: str | None,
    detail: list[dict[str, Any]],
    target_state: str | None = None,
) -> dict[str, Any]:
    """The run's replication ledger row, from what its record holds."""
    units = run.units.values()
    counts = (
        len(run.plan.tables) if run.plan else 0,
        sum(int(u.rows or 0) for u in units),
        sum(int(u.bytes or 0) for u in units),
    )
    started = run.started_at or run.submitted_at
    return support.replication_entry(
        run.run_id, started, succeeded, counts, error, detail, target_state
    )


def _drop_old(ctx: Context, run_id: str, take_dependents: bool) -> None:
    """Drop the copy this run replaced, waiting a bounded time for readers still on it."""
    s = ctx.s
    try:
        with connection(s.target_dsn, s, f"pagila-finish {run_id}") as conn:
            with conn.cursor() as cur:
                old = staging.registered(cur, "old", run_id)
            conn.commit()
            left = staging.drop(conn, old, staging.DROP_WAIT_MS, take_dependents=take_dependents)
    except psycopg2.Error as exc:  # the copy is live: a leftover is the next run's to drop
        log.warning("run %s: previous copy not dropped: %s", run_id, s.scrub(str(exc)))
        return
    if left:
        log.warning("run %s: previous copy still in use, left for the next run: %s", run_id, left)


def fail(ctx: Context, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """The errback: one failed ledger row naming the tables and errors, what the run built on
    the target undone as far as it can be, then the run ended (lock freed)."""
    run = ctx.record.get(run_id)
    if run is None or run.kind != "replicate":
        log.warning("fail %s: no such replication run; nothing done", run_id)
        return {"run_id": run_id, "state": "unknown"}
    if run.state.terminal:
        return {"run_id": run_id, "state": str(run.state)}
    if _went_live(ctx, run_id):
        lifecycle.end(ctx, run_id, RunState.SUCCEEDED)  # its copy went live before the error
        return {"run_id": run_id, "state": "succeeded"}
    failed = _failed_units(run)
    error = ctx.s.scrub(_failure(run, failed, reason))
    state = RunState.CANCELLED if run.cancel_requested else RunState.FAILED
    detail = [{"table": name, "error": err} for name, err in sorted(failed.items())]
    error += _clean_up(ctx, run, ledger_row(run, False, error, detail, run.target_state))
    ctx.record.switched(run_id, Switch(target_state=run.target_state))
    lifecycle.end(ctx, run_id, state, error)
    ctx.step(run_id, "fail", f"{state} (target {run.target_state}): {error}", error=True)
    return {"run_id": run_id, "state": str(state), "error": error}


def _went_live(ctx: Context, run_id: str) -> bool:
    try:
        row = _ledger_row(ctx, run_id)
    except psycopg2.Error:
        return False  # the target may be what broke: the run did not switch then
    return row is not None and bool(row[0])


def _failed_units(run: Run) -> dict[str, str]:
    return {
        name: u.error
        for name, u in run.units.items()
        if u.state in ("failed", "retrying", "error") and u.error
    }


def _failure(run: Run, failed: dict[str, str], reason: str | None) -> str:
    """The run's error: cancelled, its first error, the failed units, the reason, later ones."""
    parts = []
    if run.cancel_requested:
        parts.append("cancelled by request")
    if run.error:  # the run's first error first; later ones are added
        parts.append(run.error)
    if failed:
        parts.append("; ".join(f"{name}: {err}" for name, err in sorted(failed.items())))
    if reason:
        parts.append(reason)
    parts += list(run.later_errors)
    return " | ".join(dict.fromkeys(parts)) or "a task failed"


def _clean_up(ctx: Context, run: Run, row: dict[str, Any]) -> str:
    """The failed ledger row, then what an in-place run took down put back and the run's
    staging copy dropped, or kept for the next run to resume (:mod:`.resume`); what could not
    be done, or what was kept, as words to add to the run's error."""
    run_id = run.run_id
    try:
        with connection(ctx.s.target_dsn, ctx.s, f"pagila-audit {run_id}") as conn:
            support.ensure(conn, "replication")
            support.insert_replication(conn, row)
            conn.commit()
            with conn.cursor() as cur:
                ours = staging.registered(cur, "stage", run_id)
                missed = _put_back(cur, run_id)
                kept = ours and _resumable(ctx, cur, run)
                if not kept:
                    support.forget_staged(cur)
            conn.commit()
            if not kept:
                staging.drop(conn, ours, staging.DROP_WAIT_MS, keep_extensions=False)
    except Exception as exc:  # the target may be the thing that broke: still end the run
        why = ctx.s.scrub(str(exc))
        log.error("run %s: could not write the failed audit row: %s", run_id, why)
        return f" (audit row not written: {why})"
    words = f" (not put back: {'; '.join(missed)})" if missed else ""
    if kept:
        words += f" (its staging copy is kept for the next run to resume: {', '.join(ours)})"
    return words


def _resumable(ctx: Context, cur: psycopg2.extensions.cursor, run: Run) -> bool:
    """Whether a failed run's staging copy may serve the next run: resume on, a whole swap
    run, and no finishing step done on it."""
    plan = run.plan
    if not ctx.s.resume or plan is None or not plan.swap or plan.subset or plan.applies:
        return False
    return not any(support.step_done(cur, run.run_id, s) for s in ("post-data", "keep-build"))


def _put_back(cur: psycopg2.extensions.cursor, run_id: str) -> list[str]:
    """What an in-place run took down around its schemas, made again over what it left (each
    object on its own; when something could not be made, the plan stays for the next run to
    try again); a swap's plan is let go."""
    kept = keep.load(cur, run_id)
    if kept is None:
        return []
    missed = keep.put_back(cur, kept)
    if not missed:
        keep.forget(cur, run_id)
    return missed
