"""Reading the source catalog: tables, leaf partitions, sequences, materialized views."""

from __future__ import annotations

from typing import NamedTuple

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks.base import names
from pagila_tasks.base.errors import UsageError
from pagila_tasks.pg import sqlfiles
from pagila_tasks.run.plan import Table, resolve_selection

Cursor = psycopg2.extensions.cursor


def tables(cur: Cursor, schemas: tuple[str, ...]) -> list[Table]:
    """Every ordinary table and leaf partition in ``schemas``."""
    cur.execute(sqlfiles.query("catalog_tables"), {"schemas": list(schemas)})
    rows = cur.fetchall()
    traits = type_traits(cur, schemas)
    return [
        Table(
            schema,
            name,
            int(estimate),
            int(size),
            tuple(cols),
            key,
            traits.get((schema, name), NO_TRAITS).text_only,
            int(blocks),
            int(stored),
        )
        for schema, name, _is_partition, estimate, size, cols, key, blocks, stored in rows
    ]


class TypeTraits(NamedTuple):
    """What a table's column types ask of a copy and a checksum (see ``sql/table_types.sql``)."""

    text_only: bool
    """A copied column's type has no binary send/receive: copy it as text."""
    hash_by_text: bool
    """A column's type hashes an oid that differs per database: checksum rows by their text."""


NO_TRAITS = TypeTraits(False, False)


def type_traits(cur: Cursor, schemas: tuple[str, ...]) -> dict[tuple[str, str], TypeTraits]:
    """(schema, table) -> its :class:`TypeTraits`, for every table in ``schemas``.

    JIT is off for the query: its recursive type walk is estimated far above ``jit_above_cost``
    and would spend 30-40 ms compiling what runs in 2 ms.
    """
    cur.execute("SET LOCAL jit = off")
    cur.execute(sqlfiles.query("table_types"), {"schemas": list(schemas)})
    rows = cur.fetchall()
    cur.execute("RESET jit")
    return {(s, n): TypeTraits(bool(text), bool(by_text)) for s, n, text, by_text in rows}


def relation_kinds(cur: Cursor, schemas: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """(schema, name) -> relkind for every relation in ``schemas``."""
    cur.execute(sqlfiles.query("catalog_relations"), {"schemas": list(schemas)})
    return {(s, n): k for s, n, k in cur.fetchall()}


def partition_leaves(cur: Cursor, schema: str, table: str) -> list[tuple[str, str]]:
    """The leaf partitions of a partitioned table."""
    cur.execute(sqlfiles.query("catalog_partition_leaves"), {"schema": schema, "table": table})
    return [(s, n) for s, n in cur.fetchall()]


def key_span(cur: Cursor, t: Table) -> tuple[int, int] | None:
    """min and max of the table's integer key, or None for an empty table."""
    assert t.int_key is not None
    cur.execute(
        sql.SQL("SELECT min({k}), max({k}) FROM ONLY {t}").format(
            k=sql.Identifier(t.int_key), t=sql.Identifier(t.schema, t.name)
        )
    )
    lo, hi = cur.fetchone()
    return None if lo is None else (int(lo), int(hi))


def sequences(cur: Cursor, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every sequence in ``schemas``."""
    cur.execute(sqlfiles.query("catalog_sequences"), {"schemas": list(schemas)})
    return [(s, n) for s, n in cur.fetchall()]


def matviews(cur: Cursor, schemas: tuple[str, ...], only_populated: bool) -> list[tuple[str, str]]:
    """Materialized views (all, or those holding data on this server), dependencies first."""
    cur.execute(
        sqlfiles.query("catalog_matviews"),
        {"schemas": list(schemas), "only_populated": only_populated},
    )
    return [(s, n) for s, n in cur.fetchall()]


def select_tables(
    cur: Cursor, schemas: tuple[str, ...], requested: list[str] | None
) -> list[Table]:
    """The tables a run copies: every one, or those ``requested`` (refusing what is no table).

    The one selection rule, used by ``pagila-submit`` (to refuse bad names before taking the
    lock) and by ``prepare`` (to plan the run).
    """
    found = tables(cur, schemas)
    if requested is None:
        return found
    kinds = relation_kinds(cur, schemas)
    leaves = {k: partition_leaves(cur, *k) for k, kind in kinds.items() if kind == "p"}
    chosen = set(resolve_selection(requested, schemas, kinds, leaves))
    return [t for t in found if (t.schema, t.name) in chosen]


def require_schemas(cur: Cursor, schemas: tuple[str, ...]) -> None:
    """Refuse (one line) a schema name that does not exist on this server, exactly as written."""
    cur.execute(
        "SELECT s FROM unnest(%s::text[]) AS s "
        "WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = s)",
        (list(schemas),),
    )
    missing = [names.quote(row[0]) for row in cur.fetchall()]
    if missing:
        raise UsageError(f"no schema {', '.join(missing)} on the source (names are exact)")


def table_exists(cur: Cursor, key: tuple[str, str]) -> bool:
    """True when the table (schema, name) exists on this server."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(*key).as_string(cur),))
    return bool(cur.fetchone()[0])
