"""The switch: the new copy goes live, with its ledger row, in one short transaction.

Everything slow happened before, in the staging schemas. The switch renames each live schema
to ``pagila_old_...`` and each staging schema to the live name, replaces the target's large
objects with the staged ones, and inserts the run's ledger row, all in one transaction: a
reader sees the previous copy until the commit and the new one after it, and a run killed
before the commit leaves the target as it was.

It first tries to take ACCESS EXCLUSIVE locks on the live relations, waiting at most
``PAGILA_SWITCH_LOCK_MS``: then no statement can be halfway through resolving its table names
when the names move (it waits for the commit and resolves them again). A reader holding a long
query keeps such a lock from being granted; the switch then goes ahead without the locks
(renames need none), and that reader finishes on the copy it started with.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.pg import sqlfiles, support
from pagila_tasks.pg.db import connection
from pagila_tasks.replication import keep, keepplan, largeobjects, staging
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context

log = logging.getLogger(__name__)


KEEP_WAIT_MS = 30000
"""How long the switch, when it could not lock the live tables, waits for readers of the
objects it makes again elsewhere (a view someone is reading) before the run fails."""


@dataclass(frozen=True)
class Kept:
    """What the switch makes again of the target's users' work, and records as the project's."""

    plan: keepplan.KeepPlan
    manifest: keepplan.Manifest


@dataclass(frozen=True)
class Switched:
    """When the new copy went live, how long the switch held its transaction open, and what
    the target is now (``switched``, or ``replaced in place``)."""

    at: datetime
    held_ms: float
    target_state: str


def _swap(cur: psycopg2.extensions.cursor, layout: staging.Layout, run_id: str) -> None:
    support.forget_fingerprint(cur, layout.schemas)  # the run records the new copy's after
    support.forget_staged(cur)  # the staging copy goes live: nothing left to resume
    olds = {}
    for live in layout.schemas:
        build = layout.build(live)
        if staging.exists(cur, live):
            olds[live] = staging.old_name(live, run_id)
            cur.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(live), sql.Identifier(olds[live])
                )
            )
            staging.register(cur, olds[live], "old", live, run_id)
        cur.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(build), sql.Identifier(live)
            )
        )
        support.unregister(cur, build)


def run(
    ctx: Context,
    run_id: str,
    layout: staging.Layout,
    row: dict[str, Any],
    large_objects: bool,
    kept: Kept | None = None,
) -> Switched:
    """Make the build live (swap) or just final (in-place), with the ledger ``row``, atomically;
    with ``kept``, what the target's users built is made again on the new copy in the same
    transaction, so readers never see it missing."""
    s = ctx.s
    state = "switched" if layout.swap else "replaced in place"
    with connection(s.target_dsn, s, f"pagila-switch {run_id}") as conn:
        for locking in (layout.swap and s.switch_lock_ms > 0, False):
            try:
                with conn.cursor() as cur:
                    if large_objects:
                        largeobjects.apply(cur)
                    started = time.monotonic()
                    if layout.swap:
                        if locking:
                            _lock_live(cur, layout, s.switch_lock_ms)
                        _swap(cur, layout, run_id)
                    if kept is not None:
                        wait = s.switch_lock_ms if locking else KEEP_WAIT_MS
                        _keep(cur, layout, run_id, kept, wait)
                    guard.before_commit(ctx, run_id)
                    cur.execute("SELECT clock_timestamp()")
                    at = cur.fetchone()[0]
                    held = round((time.monotonic() - started) * 1000, 1)
                    support.insert_replication(
                        conn,
                        row | {"switched_at": at, "switch_ms": held, "target_state": state},
                    )
                conn.commit()
                held = round((time.monotonic() - started) * 1000, 1)
                break
            except psycopg2.errors.LockNotAvailable:
                conn.rollback()
                log.info("switch %s: a reader holds a live table; switching without locks", run_id)
        with conn.cursor() as cur:  # the whole transaction, commit included
            support.set_switch_ms(cur, run_id, held)
        conn.commit()
    ctx.step(run_id, "switch", f"{state} in {held:.1f} ms (locks: {locking})")
    return Switched(at, held, state)


def _keep(
    cur: psycopg2.extensions.cursor,
    layout: staging.Layout,
    run_id: str,
    kept: Kept,
    wait_ms: int,
) -> None:
    """Make the target's users' objects again on the new copy, record what the project now
    owns in the live schemas, and let the run's plan go."""
    cur.execute("SET LOCAL lock_timeout = %s", (f"{wait_ms}ms",))
    skipped = keep.run_steps(cur, kept.plan.switch, "in the switch")
    cur.execute("SET LOCAL lock_timeout = 0")
    if skipped:
        log.info("switch %s: gone with the source's objects, not kept: %s", run_id, skipped)
    keep.record(cur, layout.schemas, kept.manifest)
    staging.register_live(cur, layout.schemas, run_id)
    keep.forget(cur, run_id)


def _lock_live(cur: psycopg2.extensions.cursor, layout: staging.Layout, wait_ms: int) -> None:
    cur.execute(sqlfiles.query("live_relations"), {"schemas": list(layout.schemas)})
    relations = [name for (name,) in cur.fetchall()]
    if not relations:
        return
    cur.execute("SET LOCAL lock_timeout = %s", (f"{wait_ms}ms",))
    cur.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.SQL(r) for r in relations)
        )
    )
    cur.execute("SET LOCAL lock_timeout = 0")
