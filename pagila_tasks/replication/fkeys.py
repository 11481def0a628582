"""Foreign keys on the target: added NOT VALID, then validated several at a time.

``ALTER TABLE ... ADD FOREIGN KEY`` checks every row while holding SHARE ROW EXCLUSIVE on both
tables, a lock that conflicts with itself: the seven foreign keys that point at ``rental`` are
checked one after another, on one core (measured in docs/benchmarks.md). Added ``NOT VALID``
(no check, a brief lock) and then ``VALIDATE CONSTRAINT`` (SHARE UPDATE EXCLUSIVE on the
referencing table, ROW SHARE on the referenced one), the same checks run side by side and end
exactly as the source's: the same definitions, validated where the source's are. A key that is
``NOT VALID`` on the source stays so. A foreign key on a partitioned table cannot be added NOT
VALID before PostgreSQL 18; those are added checked, as before.

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
            cur.execute(
                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    fk.on(targets.get(fk.schema)), sql.Identifier(fk.name)
                )
            )
            if before_commit is not None:
                before_commit()
            conn.commit()

    with ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="fk") as pool:
        for done in [pool.submit(one, fk) for fk in interleaved(fkeys)]:
            done.result()
    log.info("validated %d foreign keys, %d at a time", len(fkeys), jobs)
