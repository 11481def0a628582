"""A table's indexes and keys built as soon as its last unit is copied, beside the copies of
the other tables, instead of all of them after the last copy.

Prepare splits post-data as the callback does (:func:`.schema.split_post_data`: the
statements that name only their own table) and keeps them per table in the plan. When a copy
commits, it counts its unit as copied for its table in Redis (a set, so a redelivery counts
once); the copy that completes its table then builds that table's statements (primary and
unique keys first), each in its own transaction, and records ``indexes <table>`` in the
bookkeeping schema in the last one. The callback's post-data skips the tables recorded so; a
table whose build a killed worker cut short is finished there (a statement whose object exists
is skipped). Only a swap run builds early: its staging copy is read by nobody. The build runs
inside the copy task that completed the table (a chain of a table's copies and an index task
in the chord's header would nest chords, which Celery's Redis backend handles poorly).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from pagila_tasks.base import names
from pagila_tasks.base.errors import PoisonMessage, Refused
from pagila_tasks.pg import support, warm
from pagila_tasks.pg.db import build_memory
from pagila_tasks.replication import earlykeys, schema
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan
from pagila_tasks.run.plan import Unit, reused_whole

log = logging.getLogger(__name__)

_TABLE = re.compile(
    r"^(?:CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?|ALTER TABLE ONLY )"
    r'(?:"(?:[^"]|"")*"|[^\s."]+)\.(?P<table>"(?:[^"]|"")*"|[^\s.("]+)'
)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def by_table(text: str, targets: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The post-data statements that name only their own table, rewritten to its build
    schema, per table (display name), keys first. Pure."""
    builds = {b: live for live, b in targets.items()}
    out: dict[str, list[str]] = {}
    for statement in schema.split_post_data(text, targets)[0]:
        hit = _TABLE.match(statement)
        if hit is None:
            continue  # never built early: the callback builds it
        build = next((b for b in builds if f"{names.quote(b)}." in statement), None)
        if build is None:
            continue
        out.setdefault(names.display(builds[build], _unquote(hit["table"])), []).append(statement)
    return {
        t: tuple(sorted(sts, key=lambda st: not st.startswith("ALTER"))) for t, sts in out.items()
    }


def step(table: str) -> str:
    """The bookkeeping step that says a table's early build committed."""
    return f"indexes {table}"


def after_copy(ctx: Context, run_id: str, unit: Unit, plan: ReplicationPlan) -> None:
    """Count ``unit`` as copied; the copy that completes its table builds the table's
    statements now, then the foreign keys it completes (:mod:`.earlykeys`)."""
    table = unit.table_name
    if not plan.builds_early(table):
        return
    mine = [u.name for u in plan.units if u.table_name == table]
    if ctx.record.table_copied(run_id, table, [unit.name]) < len(mine):
        return
    _build_now(ctx, run_id, table, plan, "beside the other copies")


def of_reused(plan: ReplicationPlan) -> list[str]:
    """Pure: the tables with indexes to build every unit of which a resumed run reused: no copy
    completes them, so each is built by a task of its own (``build_table``) from the start."""
    whole = reused_whole(plan.units, set(plan.reused))
    return sorted(t for t in whole if plan.indexes.get(t))


def reused_table(ctx: Context, run_id: str, table: str) -> dict[str, Any]:
    """The ``build_table`` task: the indexes, then the foreign keys, of a table a resumed run
    reused whole (the run that copied it may have been cut short before building them), beside
    the copies of the rest instead of in the callback (a table so built is skipped there)."""
    found = guard.run(ctx, run_id, "replicate")
    plan = found.plan
    if plan is None or table not in of_reused(plan):
        raise Refused(f"run {run_id}: {table[:200]!r} is no reused table it builds")
    deliveries = ctx.record.delivered(run_id, f"build {table}")
    if deliveries > ctx.s.retry_max + 3:
        raise PoisonMessage(f"the build of {table} was delivered {deliveries} times; giving up")
    _build_now(ctx, run_id, table, plan, "beside the copies (every unit reused)")
    return {"table": table, "statements": len(plan.indexes[table])}


def _build_now(ctx: Context, run_id: str, table: str, plan: ReplicationPlan, where: str) -> None:
    """``table``'s statements, then the foreign keys it completes (:mod:`.earlykeys`), in one
    of the run's build slots."""
    statements = plan.indexes.get(table, ())
    started = time.monotonic()
    with _slot(ctx, run_id):
        if statements:
            built = build(ctx, run_id, table, statements)
            ctx.step(
                run_id,
                "copy",
                f"{table}: {built} of {len(statements)} indexes and keys built in "
                f"{time.monotonic() - started:.2f} s, {where}",
            )
        earlykeys.after_table(ctx, run_id, table, plan)


SLOT_WAIT = 600.0
"""Seconds a table's early build waits for a slot (``PAGILA_INDEX_JOBS``) before it builds
anyway: a worker killed mid-build never gives its slot back."""


@contextmanager
def _slot(ctx: Context, run_id: str) -> Iterator[None]:
    """One of the run's ``PAGILA_INDEX_JOBS`` build slots, counted in Redis across workers."""
    limit = max(ctx.s.index_jobs, 1)
    deadline = time.monotonic() + SLOT_WAIT
    while ctx.record.index_jobs(run_id, 1) > limit and time.monotonic() < deadline:
        ctx.record.index_jobs(run_id, -1)
        time.sleep(0.05)
    try:
        yield
    finally:
        ctx.record.index_jobs(run_id, -1)


def build(ctx: Context, run_id: str, table: str, statements: tuple[str, ...]) -> int:
    """Run each statement in its own transaction (one whose object exists is skipped); the
    last records the table as built. Returns how many were built now."""
    s, built = ctx.s, 0
    with warm.borrow(s.target_dsn, s, f"pagila-index {run_id}") as conn:
        with conn.cursor() as cur:
            if support.step_done(cur, run_id, step(table)):
                conn.rollback()
                return 0
        conn.rollback()
        for i, statement in enumerate(statements):
            with conn.cursor() as cur:
                build_memory(cur, s)
                built += run_one(cur, statement)
                if i == len(statements) - 1:
                    support.record_step(cur, run_id, step(table))
            guard.before_commit(ctx, run_id)
            conn.commit()
    return built


def run_one(cur: psycopg2.extensions.cursor, statement: str) -> int:
    """1 when built, 0 when it existed already (an earlier attempt committed it)."""
    cur.execute("SAVEPOINT pagila_index")
    try:
        cur.execute(statement)
    except (psycopg2.errors.DuplicateTable, psycopg2.errors.DuplicateObject):
        cur.execute("ROLLBACK TO SAVEPOINT pagila_index")
        return 0
    except psycopg2.errors.InvalidTableDefinition:
        if "PRIMARY KEY" not in statement:  # only "multiple primary keys" means built
            raise
        cur.execute("ROLLBACK TO SAVEPOINT pagila_index")
        return 0
    cur.execute("RELEASE SAVEPOINT pagila_index")
    return 1


def built_tables(cur: psycopg2.extensions.cursor, run_id: str, tables: list[str]) -> set[str]:
    """Of ``tables``, those whose early build committed."""
    return {t for t in tables if support.step_done(cur, run_id, step(t))}
