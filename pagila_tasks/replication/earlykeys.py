"""Foreign keys added, checked, on the staging copy as soon as both of their tables are copied
and indexed, beside the other copies, instead of all of them in the callback.

Prepare picks the keys it can (:func:`planned`, pure): validated on the source, between two
tables the run copies as units (not a partitioned parent: its indexes are built as live), both
in the run's schemas. Each key's definition is rewritten by PostgreSQL's own grammar (pglast) to
name the build schemas, so it runs outside the *as live* transaction. When a table's early build
ends (:mod:`.indexes`), it is marked built in Redis; each key whose other table is built too is
claimed once across workers, added ``NOT VALID`` and then validated, each step in its own
transaction, as the callback does (:mod:`.fkeys`): the add holds SHARE ROW EXCLUSIVE on both
tables, a lock that conflicts with itself, only for a moment, and the check of every row (the
source's key was validated) runs under locks that let keys of other tables pointing at the same
table be checked at the same time (``payment``'s partitions and ``rental``'s: one after another
before, x50 0.4 s slower). A step whose locks another check holds is not waited for
(:data:`LOCK_WAIT_MS`): the key is kept in the run record for the next table's build, and the
worker goes back to copying. Staging is read by nobody, so the keys' brief locks block no one,
and a table with a key pointing at it is never emptied again: a copy counted as committed is not
redone (see :mod:`.copy`), and a resumed run drops the keys of every table it copies again (see
:mod:`.resume`). A key that cannot be added early (its referenced unique index is built as live,
a worker died) or is left ``NOT VALID`` (rows break it, a worker died between the two steps) is
left to the callback, which adds what is missing and validates what is not validated
(:mod:`.fkeys`): early is only ever a head start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from pglast import parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.pg import warm
from pagila_tasks.pg.db import build_memory
from pagila_tasks.replication.fkeys import ForeignKey, check_plan
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan

log = logging.getLogger(__name__)

ADD, VALIDATE, DONE = "add", "validate", "done"
"""A key's steps (each its own transaction), and the end of them."""
LOCK_WAIT_MS = 100
"""How long a key's step waits for its locks before the key is left for later. Adding a key
holds SHARE ROW EXCLUSIVE on both tables and validating one SHARE UPDATE EXCLUSIVE on its own:
each waits for the other, and for another validation of the same table, for as long as that
check of every row takes (x200: 1-2 s with a core idle, measured in docs/benchmarks.md)."""
REFUSED = (
    psycopg2.errors.InvalidForeignKey,
    psycopg2.errors.ForeignKeyViolation,
    psycopg2.errors.DuplicateObject,
)
"""What the server says of a key the callback must add or fail on (see :func:`add`)."""


@dataclass(frozen=True)
class EarlyKey:
    """One foreign key built early: its table and the one it references (display names), its
    name and the statement that adds it on the build schemas."""

    table: str
    references: str
    name: str
    statement: str

    def as_list(self) -> list[str]:
        return [self.table, self.references, self.name, self.statement]


Todo = tuple[str, EarlyKey]
"""A key and the step it is at (:data:`ADD` or :data:`VALIDATE`)."""


def planned(
    foreign: list[ForeignKey], targets: dict[str, str], copied: set[str]
) -> tuple[EarlyKey, ...]:
    """The keys the copies can add (see the module's docstring), rewritten to ``targets``
    (live schema -> build schema); ``copied`` are the display names of the units' tables.
    Pure."""
    out = []
    for fk in foreign:
        table = names.display(fk.schema, fk.table)
        if not fk.validated or table not in copied or fk.schema not in targets:
            continue
        text = f"ALTER TABLE ONLY {table} ADD CONSTRAINT {names.quote(fk.name)} {fk.definition}"
        try:
            stmt = parse_sql(text)[0].stmt
        except ParseError:  # syntax newer than pglast's grammar: the callback adds it as is
            continue
        pk = stmt.cmds[0].def_.pktable
        refs = names.display(pk.schemaname, pk.relname)
        if pk.schemaname not in targets or refs not in copied:
            continue
        stmt.relation.schemaname = targets[fk.schema]
        pk.schemaname = targets[pk.schemaname]
        out.append(EarlyKey(table, refs, fk.name, RawStream()(stmt)))
    return tuple(out)


def not_valid(key: EarlyKey) -> tuple[str, tuple[str, str]]:
    """The key's statement adding it ``NOT VALID`` (no check, a brief lock), and the table
    (schema, name) on which it is then validated. Pure."""
    stmt = parse_sql(key.statement)[0].stmt
    constraint = stmt.cmds[0].def_
    constraint.skip_validation = True
    constraint.initially_valid = False
    return RawStream()(stmt), (stmt.relation.schemaname, stmt.relation.relname)


def of_plan(plan: ReplicationPlan) -> tuple[EarlyKey, ...]:
    return tuple(EarlyKey(*k) for k in plan.early_keys)


def tables(keys: tuple[EarlyKey, ...]) -> set[str]:
    """The tables whose completion may let a key be added."""
    return {k.table for k in keys} | {k.references for k in keys}


def ready(keys: tuple[EarlyKey, ...], table: str, built: set[str]) -> list[EarlyKey]:
    """The keys ``table`` takes part in whose two tables are built. Pure."""
    return [
        k
        for k in keys
        if table in (k.table, k.references) and k.table in built and k.references in built
    ]


def after_table(ctx: Context, run_id: str, table: str, plan: ReplicationPlan) -> None:
    """``table`` is copied and indexed: add each key it completes (claimed once per run), and
    those an earlier build found busy (:func:`add`); what is still busy waits for the next."""
    keys = of_plan(plan)
    if not keys:
        return
    todo: list[Todo] = []
    if table in tables(keys):
        built = ctx.record.table_built(run_id, table)
        mine = ready(keys, table, built)
        todo = [(ADD, k) for k in mine if ctx.record.claim(run_id, f"fk {k.table} {k.name}")]
    todo += [(stage, EarlyKey(*key)) for stage, *key in ctx.record.take_deferred_keys(run_id)]
    if not todo:
        return
    started = time.monotonic()
    added, busy = add(ctx, run_id, todo)
    ctx.record.defer_keys(run_id, [[stage, *k.as_list()] for stage, k in busy])
    waiting = f"; left for later, their locks busy: {_named(k for _, k in busy)}" if busy else ""
    ctx.step(
        run_id,
        "copy",
        f"{table}: {len(added)} of {len(todo)} foreign keys added and validated in "
        f"{time.monotonic() - started:.2f} s, beside the other copies ({', '.join(added)})"
        + waiting,
    )


def _named(keys: Iterable[EarlyKey]) -> str:
    return ", ".join(f"{k.table}.{names.quote(k.name)}" for k in keys)


def add(ctx: Context, run_id: str, todo: list[Todo]) -> tuple[list[str], list[Todo]]:
    """Add each key ``NOT VALID``, then validate it (or only validate it: ``VALIDATE``), each
    step in its own transaction; those added and validated (as ``table.name``), and those
    whose locks were busy, with the step they wait at.

    A step waits at most :data:`LOCK_WAIT_MS` for its locks: a longer wait is a validation of
    one of its tables running elsewhere, and the worker has copies to do meanwhile. A key found
    busy is tried once more after the others, then left for a later build (or the callback).
    One the server refuses (no unique index on its referenced columns yet, rows that break it,
    added already) is left to the callback, which adds what is missing and validates what is
    not, or fails the run saying why."""
    added: list[str] = []
    pending = list(todo)
    with warm.borrow(ctx.s.target_dsn, ctx.s, f"pagila-fk {run_id}") as conn:
        for _ in range(2):
            busy: list[Todo] = []
            for stage, key in pending:
                outcome = _steps(ctx, run_id, conn, stage, key)
                if outcome == DONE:
                    added.append(_named([key]))
                elif outcome is not None:
                    busy.append((outcome, key))
            pending = busy
            if not pending:
                break
    return added, pending


def _steps(
    ctx: Context, run_id: str, conn: psycopg2.extensions.connection, stage: str, key: EarlyKey
) -> str | None:
    """One key's steps from ``stage`` on: DONE, the step whose locks were busy, or None when
    the server refused it."""
    statement, table = not_valid(key)
    validate = sql.SQL("ALTER TABLE ONLY {} VALIDATE CONSTRAINT {}").format(
        sql.Identifier(*table), sql.Identifier(key.name)
    )
    steps = [(ADD, statement), (VALIDATE, validate)] if stage == ADD else [(VALIDATE, validate)]
    for name, step in steps:
        try:
            with conn.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = %s", (f"{LOCK_WAIT_MS}ms",))
                build_memory(cur, ctx.s)  # the check's hash table is sized by it
                if name == VALIDATE:
                    check_plan(cur, sql.Identifier(*table), key.name)
                cur.execute(step)
            guard.before_commit(ctx, run_id)
            conn.commit()
        except psycopg2.errors.LockNotAvailable:
            conn.rollback()
            return name
        except REFUSED as exc:
            conn.rollback()  # the message may quote row values: only its kind
            log.info("run %s: %s left to the callback (%s)", run_id, key.name, exc.pgcode)
            return None
    return DONE
