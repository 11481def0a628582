"""Foreign keys on the target: added NOT VALID, then validated several at a time.

``ALTER TABLE ... ADD FOREIGN KEY`` checks every row while holding SHARE ROW EXCLUSIVE on both
tables, a lock that conflicts with itself: the seven foreign keys that point at ``rental`` are
checked one after another, on one core (measured in docs/benchmarks.md). Added ``NOT VALID``
(no check, a brief lock) and then ``VALIDATE CONSTRAINT`` (SHARE UPDATE EXCLUSIVE on the
referencing table, ROW SHARE on the referenced one), the same checks run side by side and end
exactly as the source's: the same definitions, validated where the source's are. A key that is
``NOT VALID`` on the source stays so. A foreign key on a partitioned table cannot be added NOT
VALID before PostgreSQL 18; those are added checked, as before. A check whose referenced table
is much larger than the key's own probes that table's unique index instead of hashing all of it
(:func:`check_plan`).

Definitions are read with ``search_path = pg_catalog`` (as pg_dump does), so the names in them
are qualified whatever the database's own search path is; tables are (schema, name) pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.config import Settings
from pagila_tasks.pg import sqlfiles, warm
from pagila_tasks.pg.db import build_memory

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

PROBE_RATIO = 4
"""A key's check probes the referenced table's unique index once per row of its own table
(instead of hashing every row of the referenced table) when that table holds at least this many
times as many rows (:func:`probes_cheaper`). Measured at x100 on two cores (docs/benchmarks.md),
a probe of a table written moments before costs about five times a row of the hash: the seven
``payment`` partitions' keys to ``rental`` (1.6 M rows; 72-271 k in each partition) took 2.4
core-seconds probing against 4.2-5.1 hashing (3.6-4.0 without parallel workers)."""


@dataclass(frozen=True)
class ForeignKey:
    """One foreign key: its table, name, ``pg_get_constraintdef`` and whether it is validated."""

    schema: str
    table: str
    name: str
    definition: str
    validated: bool = True

    def as_list(self) -> list[object]:
        """JSON-friendly form (kept in the run record between prepare and finish)."""
        return [self.schema, self.table, self.name, self.definition, self.validated]

    def on(self, schema: str | None = None) -> sql.Composable:
        """Its table, in its own schema or in ``schema`` (the run's build of it)."""
        return sql.Identifier(schema or self.schema, self.table)


def _rows(cur: Cursor) -> list[ForeignKey]:
    return [ForeignKey(s, t, n, d, bool(v)) for s, t, n, d, v in cur.fetchall()]


def read(cur: Cursor, schemas: tuple[str, ...]) -> list[ForeignKey]:
    """The foreign keys defined in ``schemas`` (on the server ``cur`` reads)."""
    cur.execute(sqlfiles.query("foreign_keys_in_schemas"), {"schemas": list(schemas)})
    return _rows(cur)


def touching(cur: Cursor, tables: list[tuple[str, str]]) -> list[ForeignKey]:
    """The foreign keys on, or pointing at, ``tables`` (for a --tables run)."""
    names = [sql.Identifier(*t).as_string(cur) for t in tables]
    cur.execute(sqlfiles.query("foreign_keys_touching"), {"tables": names})
    return _rows(cur)


def drop(conn: psycopg2.extensions.connection, fkeys: list[ForeignKey]) -> None:
    """Drop these foreign keys where they exist (an earlier attempt's), in one transaction."""
    with conn.cursor() as cur:
        for fk in fkeys:
            cur.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                    fk.on(), sql.Identifier(fk.name)
                )
            )
    conn.commit()


def add(cur: Cursor, fkeys: list[ForeignKey]) -> list[ForeignKey]:
    """Add the missing ones (in the caller's transaction); returns those left to validate.

    Run *as live* (see :mod:`.staging`): the tables a definition references are
    named by their live names and must resolve to the copy being built.
    """
    pending = []
    for fk in fkeys:
        cur.execute(
            sqlfiles.query("foreign_key_state"),
            {"name": fk.name, "schema": fk.schema, "table": fk.table},
        )
        validated, relkind = cur.fetchone()
        if validated is None:
            # partitioned: NOT VALID only from PostgreSQL 18; a source key NOT VALID stays so
            deferred = relkind != "p" or not fk.validated
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}").format(
                    fk.on(),
                    sql.Identifier(fk.name),
                    sql.SQL(fk.definition),
                    sql.SQL(" NOT VALID" if deferred else ""),
                )
            )
            validated = not deferred
        if fk.validated and not validated:
            pending.append(fk)
    return pending


def probes_cheaper(rows: float, referenced: float, size: int, cache: int) -> bool:
    """Pure: whether a key's check should probe the referenced table's unique index row by row
    (:data:`PROBE_RATIO`), given the rows PostgreSQL last counted in the key's table and in the
    referenced one (``pg_class.reltuples``, -1 when never counted: no, the server chooses), the
    bytes of the referenced table and its index, and the server's ``effective_cache_size``:
    probes are cheap while what they read is in memory; beyond it each may be a read from disk,
    and the server's plan stays."""
    in_memory = 0 <= size <= cache
    return in_memory and rows >= 0 and referenced >= PROBE_RATIO * max(rows, 1.0)


def check_plan(cur: Cursor, table: sql.Composable, name: str) -> bool:
    """Have this transaction's check of key ``name`` on ``table`` probe the referenced table's
    unique index when :func:`probes_cheaper`; whether it does.

    PostgreSQL checks a new key with one anti-join of the two whole tables, planned as any query:
    with freshly copied tables it hashes the referenced table every time, however few rows the
    key's own table holds (each of seven partitions pointing at one large table hashes all of
    it again). Probing is always possible: a key's referenced columns have a unique btree index
    whose equality operators the check uses, so with hash and merge joins off the plan is a
    nested loop over that index. The verdict is the same whichever plan finds it."""
    cur.execute(sqlfiles.query("foreign_key_sides"), {"table": table.as_string(cur), "name": name})
    found = cur.fetchone()
    if found is None or not probes_cheaper(float(found[0]), float(found[1]), *map(int, found[2:])):
        return False
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")
    return True


def interleaved(fkeys: list[ForeignKey]) -> list[ForeignKey]:
    """The keys ordered so that neighbours are on different tables.

    VALIDATE CONSTRAINT locks its own table against another validation of the same table, so
    two keys of one table taken side by side would run one after the other.
    """
    by_table: dict[tuple[str, str], list[ForeignKey]] = {}
    for fk in fkeys:
        by_table.setdefault((fk.schema, fk.table), []).append(fk)
    groups = sorted(by_table.values(), key=len, reverse=True)
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def validate(
    s: Settings,
    fkeys: list[ForeignKey],
    jobs: int,
    name: str,
    targets: dict[str, str] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """``VALIDATE CONSTRAINT`` each, ``jobs`` at a time, each in its own transaction (preceded
    by ``before_commit``, the run's check).

    ``targets`` maps a schema to where the run built it (a staging schema): validation names
    only the key's own table, so it can run outside the *as live* transaction.
    """
    targets = targets or {}

    def one(fk: ForeignKey) -> None:
        with warm.borrow(s.target_dsn, s, name) as conn, conn.cursor() as cur:
            build_memory(cur, s)  # the check's hash table is sized by it
            table = fk.on(targets.get(fk.schema))
            check_plan(cur, table, fk.name)
            cur.execute(
                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    table, sql.Identifier(fk.name)
                )
            )
            if before_commit is not None:
                before_commit()
            conn.commit()

    with ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="fk") as pool:
        for done in [pool.submit(one, fk) for fk in interleaved(fkeys)]:
            done.result()
    log.info("validated %d foreign keys, %d at a time", len(fkeys), jobs)
