"""Sequences: the target gets exactly the source's ``last_value`` and ``is_called``.

The Airflow design set them from ``max(id)``, one below the source where rows were deleted or
values skipped; reading the sequence itself is exact for owned, identity and free-standing ones.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import catalog

Cursor = psycopg2.extensions.cursor


def read(cur: Cursor, schemas: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
    """``schema.name`` -> (last_value, is_called) for every sequence in ``schemas``."""
    values: dict[str, tuple[int, bool]] = {}
    for schema, name in catalog.sequences(cur, schemas):
        cur.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        )
        last_value, is_called = cur.fetchone()
        values[f"{schema}.{name}"] = (int(last_value), bool(is_called))
    return values


def apply(cur: Cursor, values: dict[str, tuple[int, bool]]) -> None:
    """Set each target sequence to the given value."""
    for qualified, (last_value, is_called) in values.items():
        schema, _, name = qualified.partition(".")
        cur.execute(
            "SELECT pg_catalog.setval(%s::regclass, %s, %s)",
            (sql.Identifier(schema, name).as_string(cur), last_value, is_called),
        )
