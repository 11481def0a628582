"""Verification: per table, row count and content checksum on both sides must agree.

The source side is read inside the run's snapshot, so concurrent writes to the source do not
make a correct copy look wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.pg import sqlfiles
from pagila_tasks.replication import catalog

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


def measure(
    cur: Cursor, schema: str, table: str, checksums: bool, by_text: bool = False
) -> tuple[int, str | None]:
    """Row count and (if asked) checksum of one table, partitions excluded.

    The checksum hashes rows as records where every column type can be hashed by its value,
    else (or when ``by_text``: a type hashes an oid, which differs between databases) their
    text form; it is prefixed with the method (``h:`` or ``t:``) so two sides that differ in
    method can never look equal.
    """
    target = sql.Identifier(schema, table)
    if not checksums:
        cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(target))
        return int(cur.fetchone()[0]), None
    if not by_text:
        cur.execute("SAVEPOINT pagila_checksum")
        try:
            cur.execute(sql.SQL(sqlfiles.query("table_checksum_hashed")).format(table=target))
            count, checksum = cur.fetchone()
            cur.execute("RELEASE SAVEPOINT pagila_checksum")
            return int(count), f"h:{checksum}"
        except psycopg2.Error:  # a type without a hash function (tsvector, json, point...)
            cur.execute("ROLLBACK TO SAVEPOINT pagila_checksum")
    cur.execute(sql.SQL(sqlfiles.query("table_checksum")).format(table=target))
    count, checksum = cur.fetchone()
    return int(count), f"t:{checksum}"


def measure_all(
    cur: Cursor,
    tables: list[tuple[str, str]],
    checksums: bool,
    targets: dict[str, str] | None = None,
) -> dict[str, tuple[int, str | None]]:
    """Measure every table on one side (one connection, so both sides can run at once).

    Keys are the tables' live names for people; ``targets`` maps a schema to where the run
    built it on the target (its staging schema), which is what is measured there.
    """
    targets = targets or {}
    built = [(schema, targets.get(schema, schema), table) for schema, table in tables]
    traits = catalog.type_traits(cur, tuple({b for _, b, _ in built})) if checksums else {}
    return {
        names.display(schema, table): measure(
            cur, b, table, checksums, traits.get((b, table), catalog.NO_TRAITS).hash_by_text
        )
        for schema, b, table in built
    }


def combine(
    source: dict[str, tuple[int, str | None]], target: dict[str, tuple[int, str | None]]
) -> list[TableCheck]:
    """Pair the two sides' measures into verdicts (a table missing on the target: 0 rows)."""
    return [
        TableCheck(
            name, rows, target.get(name, (0, None))[0], checksum, target.get(name, (0, None))[1]
        )
        for name, (rows, checksum) in source.items()
    ]
