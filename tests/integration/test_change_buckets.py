"""How a refresh puts keys in buckets to find deleted ones, on a real server: by ranges of the
key's leading column where that spreads the rows, else by hash; every way finds the same
deleted keys."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from pagila_tasks.replication import changes
from pagila_tasks.run import changeplan
from pagila_tasks.run.changeplan import Change
from tests.support import query

SHAPES = {
    # table: (key columns and their types, rows (g = 1..n), analyzed, the way expected)
    "one_int": ("id int PRIMARY KEY", ("id",), ("integer",), "g", False, ">>"),
    "one_ts": (
        "at timestamptz PRIMARY KEY",
        ("at",),
        ("timestamp with time zone",),
        "timestamptz '2022-01-01' + g * interval '37 minutes'",
        False,
        "width_bucket",
    ),
    "date_id": (
        "d date, id int, PRIMARY KEY (d, id)",
        ("d", "id"),
        ("date", "integer"),
        "date '2020-01-01' + g / 3, g",
        True,
        "width_bucket",
    ),
    "few_id": (
        "k smallint, id int, PRIMARY KEY (k, id)",
        ("k", "id"),
        ("smallint", "integer"),
        "g % 3, g",
        True,
        "hash_record_extended",
    ),
    "unanalyzed": (
        "a int, b int, PRIMARY KEY (a, b)",
        ("a", "b"),
        ("integer", "integer"),
        "g, g",
        False,
        "hash_record_extended",
    ),
    "text_key": (
        "code text PRIMARY KEY",
        ("code",),
        ("text",),
        "'c' || g",
        False,
        "hash_record_extended",
    ),
}


def test_deleted_keys_are_found_alike_by_ranges_where_they_spread_else_by_hash(servers) -> None:
    """A one-column integer or timestamp key is cut into ranges; a longer key by its leading
    column only when its statistics give it enough values (a date with three rows each), not
    with three values or no statistics; a text key is hashed. Counting per bucket on both
    sides picks the buckets that hold the deleted keys, whichever the way."""
    dsn = servers.target_dsn
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        for table, (ddl, key, types, values, analyzed, way) in SHAPES.items():
            query(dsn, f"CREATE TABLE public.{table} ({ddl})")
            query(
                dsn, f"INSERT INTO public.{table} SELECT {values} FROM generate_series(1, 3000) g"
            )
            query(dsn, f"CREATE TABLE public.{table}_src AS SELECT * FROM public.{table}")
            query(
                dsn,
                f"DELETE FROM public.{table}_src WHERE ctid IN "
                f"(SELECT ctid FROM public.{table}_src OFFSET 1000 LIMIT 3)",
            )
            if analyzed:
                query(dsn, f"ANALYZE public.{table}")
            c = Change("public", table, "t0", key, types, key, ())
            live = sql.Identifier("public", table)
            bucket, of_type = changes._bucket(cur, c, live, changeplan.buckets(3))
            text = bucket.as_string(cur)
            assert way in text, (table, text)
            count = sql.SQL("SELECT {}::{} AS b, count(*) FROM ONLY {} AS t GROUP BY 1")
            cur.execute(count.format(bucket, of_type, live))
            on_target = dict(cur.fetchall())
            cur.execute(count.format(bucket, of_type, sql.Identifier("public", f"{table}_src")))
            chosen = changeplan.deleted_in(dict(cur.fetchall()), on_target, {})
            assert 1 <= len(chosen) <= 3, (table, chosen)
            keys = sql.SQL(", ").join(sql.Identifier(k) for k in key)
            among = sql.SQL("{}::{} = ANY ({}::{}[])").format(
                bucket, of_type, sql.Literal(chosen), of_type
            )
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM ONLY {} AS t WHERE {} AND ({}) NOT IN "
                    "(SELECT {} FROM public.{})"
                ).format(live, among, keys, keys, sql.Identifier(f"{table}_src"))
            )
            assert cur.fetchone()[0] == 3, table  # every deleted key is in a chosen bucket
            cur.execute(sql.SQL("SELECT count(*) FROM ONLY {} AS t WHERE {}").format(live, among))
            assert cur.fetchone()[0] < 3000 // 4, table  # and few others are
            conn.rollback()
    finally:
        conn.close()
