"""Sequences: the target gets exactly the source's ``last_value`` and ``is_called``.

The Airflow design set them from ``max(id)``, one below the source where rows were deleted or
values skipped; reading the sequence itself is exact for owned, identity and free-standing ones.
Sequences are (schema, name) pairs; the values are applied *as live* (see
:mod:`.staging`), so the live names reach the copy being built.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.replication import catalog

Cursor = psycopg2.extensions.cursor
Values = dict[tuple[str, str], tuple[int, bool]]


def read(cur: Cursor, schemas: tuple[str, ...]) -> Values:
    """(schema, name) -> (last_value, is_called) for every sequence in ``schemas``."""
    values: Values = {}
    for schema, name in catalog.sequences(cur, schemas):
        cur.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        )
        last_value, is_called = cur.fetchone()
        values[(schema, name)] = (int(last_value), bool(is_called))
    return values


def apply(cur: Cursor, values: Values) -> None:
    """Set each target sequence to the given value."""
    for (schema, name), (last_value, is_called) in values.items():
        cur.execute(
            "SELECT pg_catalog.setval(%s::regclass, %s, %s)",
            (sql.Identifier(schema, name).as_string(cur), last_value, is_called),
        )
