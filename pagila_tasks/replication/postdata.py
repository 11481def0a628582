"""What comes after the data, on the new copy: post-data, what the target's users built,
sequences and materialized views.

Post-data's indexes and keys that name only their own table are built two at a time on the build
schemas (:func:`.schema.split_post_data`); the rest runs *as live* (see :mod:`.staging`) in one
transaction. Every step that commits records itself in the bookkeeping schema in the same
transaction (:func:`pagila_tasks.pg.support.step_done`), so a redelivered callback skips it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import ReplicationError
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import build_memory, connection
from pagila_tasks.replication import (
    fkeys,
    indexes,
    keep,
    keepplan,
    protect,
    schema,
    sequences,
    staging,
)
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan, Resolved

log = logging.getLogger(__name__)


def post_data(
    ctx: Context,
    run_id: str,
    plan: ReplicationPlan,
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
        if support.step_done(cur, run_id, "post-data"):
            return [fk for fk in foreign if fk.validated]
        conn.commit()
        text = "" if plan.subset else _post_data_script(ctx, run_id, plan)
        apart, rest = schema.split_post_data(text, layout.targets())
        built = indexes.built_tables(cur, run_id, list(plan.indexes))
        conn.commit()
        done = {st for t in built for st in plan.indexes[t]}
        build_apart(ctx, run_id, [st for st in apart if st not in done])
        build_memory(cur, s, local=False)  # index builds and key checks size their memory by it
        with staging.as_live(cur, layout):
            if rest.strip():
                schema.run(cur, rest)
            cur.execute("SET search_path = pg_catalog")
            pending = fkeys.add(cur, foreign)
        support.record_step(cur, run_id, "post-data")
        guard.before_commit(ctx, run_id)
        conn.commit()
    return pending


def _post_data_script(ctx: Context, run_id: str, plan: ReplicationPlan) -> str:
    """The post-data section of the run's schema dump, without foreign keys, as SQL."""
    archive = ctx.record.schema(run_id)
    if archive is None:
        raise ReplicationError(f"run {run_id}: the schema dump is gone from Redis")
    return schema.script(
        ctx.s,
        archive,
        "post-data",
        plan.source_version,
        plan.target_version,
        foreign_keys=False,
    )


def build_apart(ctx: Context, run_id: str, statements: list[str]) -> None:
    """Run each statement in its own transaction, two at a time; one an earlier attempt of this
    callback already committed (the object exists) is skipped."""
    s = ctx.s

    def one(statement: str) -> None:
        with warm.borrow(s.target_dsn, s, f"pagila-index {run_id}") as conn:
            with conn.cursor() as cur:
                build_memory(cur, s)
                indexes.run_one(cur, statement)
            guard.before_commit(ctx, run_id)
            conn.commit()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"index-{run_id}") as pool:
        for done in [pool.submit(one, st) for st in statements]:
            done.result()


def keep_build(
    ctx: Context,
    run_id: str,
    layout: staging.Layout,
    manifest: keepplan.Manifest,
    chosen: Resolved,
) -> keepplan.KeepPlan:
    """Build on the new copy what the target's users added to the replicated tables, and ahead
    under temporary names their materialized views and constraints elsewhere (checked against
    the new rows), as live, before the switch. A swap reads what to keep now (the live copy is
    what readers use until the switch); in place, prepare read it before its reset. Done once
    per run (a recorded step, with the plan the switch then carries out)."""
    s = ctx.s
    with connection(s.target_dsn, s, f"pagila-keep {run_id}") as conn, conn.cursor() as cur:
        saved = keep.load(cur, run_id)
        if support.step_done(cur, run_id, "keep-build") and saved is not None:
            return saved
        if layout.swap or saved is None:
            mine = protect.replaceable(cur, layout.schemas, chosen.overwrite)
            token = names.run_token(run_id)
            kept = keep.assess(cur, manifest, layout.schemas, layout.swap, token, mine)
            keepplan.check(kept, chosen.drop_dependents, keepplan.how_lost(layout.swap))
        else:
            kept = saved
        ctx.step(run_id, "finish", f"keep {len(kept.kept)} objects the target's users built")
        if kept.notes:
            log.warning("run %s: kept in part: %s", run_id, "; ".join(kept.notes))
            ctx.record.keeping(run_id, notes=kept.notes)
        build_memory(cur, s, local=False)
        alone, rest = keepplan.apart(kept.build, _quoted_builds(cur, layout))
        conn.commit()
        # the indexes first, each committed: the as-live part holds its locks (a key's on the
        # table it references) until the step commits, and an index build queued behind them
        # would wait for a commit that waits for it
        build_apart(ctx, run_id, alone)
        with staging.as_live(cur, layout):
            keep.run_steps(cur, rest, "on the new copy, before the switch")
        keep.save(cur, run_id, kept)
        support.record_step(cur, run_id, "keep-build")
        guard.before_commit(ctx, run_id)
        conn.commit()
    return kept


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


def sequences_and_matviews(
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
        guard.before_commit(ctx, run_id)
        conn.commit()
    return target
