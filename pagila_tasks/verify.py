"""Verification: per table, row count and content checksum on both sides must agree.

The source side is read inside the run's snapshot, so concurrent writes to the source do not
make a correct copy look wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import sqlfiles

Cursor = psycopg2.extensions.cursor


@dataclass(frozen=True)
class TableCheck:
    """One table's verdict."""

    table: str
    source_rows: int
    target_rows: int
    source_checksum: str | None
    target_checksum: str | None

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


def measure(cur: Cursor, schema: str, table: str, checksums: bool) -> tuple[int, str | None]:
    """Row count and (if asked) checksum of one table, partitions excluded."""
    target = sql.Identifier(schema, table)
    if checksums:
        cur.execute(sql.SQL(sqlfiles.query("table_checksum")).format(table=target))
        count, checksum = cur.fetchone()
        return int(count), checksum
    cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(target))
    return int(cur.fetchone()[0]), None


def compare(
    src: Cursor, tgt: Cursor, tables: list[tuple[str, str]], checksums: bool
) -> list[TableCheck]:
    """Measure every table on both sides."""
    checks = []
    for schema, table in tables:
        s_rows, s_sum = measure(src, schema, table, checksums)
        t_rows, t_sum = measure(tgt, schema, table, checksums)
        checks.append(TableCheck(f"{schema}.{table}", s_rows, t_rows, s_sum, t_sum))
    return checks
