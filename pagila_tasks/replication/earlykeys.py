"""Foreign keys added, checked, on the staging copy as soon as both of their tables are copied
and indexed, beside the other copies, instead of all of them in the callback.

Prepare picks the keys it can (:func:`planned`, pure): validated on the source, between two
tables the run copies as units (not a partitioned parent: its indexes are built as live), both
in the run's schemas. Each key's definition is rewritten by PostgreSQL's own grammar (pglast)
to name the build schemas, so it runs outside the *as live* transaction. When a table's early
build ends (:mod:`.indexes`), it is marked built in Redis; each key whose other table is built
too is claimed once across workers and added in one transaction (which checks every row, as
the source's key was validated). Staging is read by nobody, so the key's brief locks block no
one, and a table with a key pointing at it is never emptied again: a copy counted as committed
is not redone (see :mod:`.copy`), and a resumed run drops the keys of every table it copies
again (see :mod:`.resume`). A key that cannot be added early (its referenced unique index is
built as live, a worker died) is left to the callback, which adds what is missing and
validates what is not validated (:mod:`.fkeys`): early is only ever a head start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from pglast import parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pagila_tasks.base import names
from pagila_tasks.pg import warm
from pagila_tasks.pg.db import build_memory
from pagila_tasks.replication.fkeys import ForeignKey
from pagila_tasks.run import guard
from pagila_tasks.run.context import Context
from pagila_tasks.run.model import ReplicationPlan

log = logging.getLogger(__name__)


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
    """``table`` is copied and indexed: add each key it completes (claimed once per run)."""
    keys = of_plan(plan)
    if table not in tables(keys):
        return
    built = ctx.record.table_built(run_id, table)
    mine = ready(keys, table, built)
    todo = [k for k in mine if ctx.record.claim(run_id, f"fk {k.table} {k.name}")]
    if not todo:
        return
    started = time.monotonic()
    added = add(ctx, run_id, todo)
    ctx.step(
        run_id,
        "copy",
        f"{table}: {len(added)} of {len(todo)} foreign keys added and validated in "
        f"{time.monotonic() - started:.2f} s, beside the other copies ({', '.join(added)})",
    )


def add(ctx: Context, run_id: str, keys: list[EarlyKey]) -> list[str]:
    """Add each key in its own transaction; those added (as ``table.name``). One the server
    refuses now (no unique index on its referenced columns yet, rows that break it) is left to
    the callback, which adds and validates it or fails the run saying why."""
    s, added = ctx.s, []
    with warm.borrow(s.target_dsn, s, f"pagila-fk {run_id}") as conn:
        for key in keys:
            with conn.cursor() as cur:
                build_memory(cur, s)
                try:
                    cur.execute(key.statement)
                except (
                    psycopg2.errors.InvalidForeignKey,
                    psycopg2.errors.ForeignKeyViolation,
                    psycopg2.errors.DuplicateObject,
                ) as exc:
                    conn.rollback()  # the message may quote row values: only its kind
                    log.info("run %s: %s left to the callback (%s)", run_id, key.name, exc.pgcode)
                    continue
            guard.before_commit(ctx, run_id)
            conn.commit()
            added.append(f"{key.table}.{names.quote(key.name)}")
    return added
