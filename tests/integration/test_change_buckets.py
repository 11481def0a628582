"""How a refresh puts keys in buckets to find deleted ones, on a real server: by ranges of the
key's leading column where their counts show the rows spread, else by hash; every way finds
the same deleted keys."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from pagila_tasks.replication import changes
from pagila_tasks.run.changeplan import Change, buckets, deleted_in
from tests.support import query

SHAPES = {
    # table: (columns and key, key columns, their types, rows (g = 1..3000), the way expected)
    "one_int": ("id int PRIMARY KEY", ("id",), ("integer",), "g", ">>"),
    "one_ts": (
        "at timestamptz PRIMARY KEY",
        ("at",),
        ("timestamp with time zone",),
        "timestamptz '2022-01-01' + g * interval '37 minutes'",
        "date_bin",
    ),
    "date_id": (  # three rows a day, as payment's (payment_date, payment_id) at x50
        "d date, id int, PRIMARY KEY (d, id)",
        ("d", "id"),
        ("date", "integer"),
        "date '2020-01-01' + g / 3, g",
        "date_bin",
    ),
    "few_id": (  # a leading column of three values: its ranges bunch the rows
        "k smallint, id int, PRIMARY KEY (k, id)",
        ("k", "id"),
        ("smallint", "integer"),
        "g % 3, g",
        "hash_record_extended",
    ),
    "clustered": (  # a span from 1 to 2**40 with almost every key at its start
        "id bigint PRIMARY KEY",
        ("id",),
        ("bigint",),
        "CASE WHEN g > 2990 THEN (2::bigint ^ 40)::bigint - g ELSE g END",
        "hash_record_extended",
    ),
    "text_pair": (  # two equal columns: their row hash's low bits are all zero
        "a text, b text, PRIMARY KEY (a, b)",
        ("a", "b"),
        ("text", "text"),
        "'c' || g, 'c' || g",
        "hash_record_extended",
    ),
}


def test_deleted_keys_are_found_alike_by_ranges_where_they_spread_else_by_hash(servers) -> None:
    """A key whose leading column is an integer, a date or a timestamp is cut into ranges when
    their counts show the rows spread (a date with three rows each); a leading column of three
    values, or keys clustered at one end of their span, bunch them, and those keys are hashed,
    as a text key is (two equal columns too). Counting per bucket on both sides picks the
    buckets that hold the deleted keys, whichever the way, and few others."""
    dsn = servers.target_dsn
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        for table, (ddl, key, types, values, way) in SHAPES.items():
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
            c = Change("public", table, "t0", key, types, key, ())
            live = sql.Identifier("public", table)
            bucket, of_type, on_target, ranges = changes._live_buckets(cur, c, live, buckets(3))
            assert way in bucket.as_string(cur), (table, bucket.as_string(cur))
            assert (ranges is None) == (way == "hash_record_extended"), table
            assert sum(on_target.values()) == 3000
            on_source = changes._per_bucket(cur, bucket, sql.Identifier("public", f"{table}_src"))
            chosen = deleted_in(on_source, on_target, {})
            assert 1 <= len(chosen) <= 3, (table, chosen)
            keys = sql.SQL(", ").join(sql.Identifier(k) for k in key)
            among = sql.SQL("{} = ANY ({}::{}[])").format(bucket, sql.Literal(chosen), of_type)
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM ONLY {} AS t WHERE {} AND ({}) NOT IN "
                    "(SELECT {} FROM public.{})"
                ).format(live, among, keys, keys, sql.Identifier(f"{table}_src"))
            )
            assert cur.fetchone()[0] == 3, table  # every deleted key is in a chosen bucket
            cur.execute(sql.SQL("SELECT count(*) FROM ONLY {} AS t WHERE {}").format(live, among))
            count_among = cur.fetchone()[0]
            assert count_among < 3000 // 4, table  # and few others are
            # the chosen ranges' bounds of the leading column (read by its index) lose none
            within = changes._within(c, ranges, chosen)
            assert (within.as_string(cur) != "") == (ranges is not None), table
            cur.execute(
                sql.SQL("SELECT count(*) FROM ONLY {} AS t WHERE {}{}").format(live, among, within)
            )
            assert cur.fetchone()[0] == count_among, table
            conn.rollback()
    finally:
        conn.close()


def test_dates_outside_the_binned_years_never_break_the_buckets(servers) -> None:
    """A live span reaching a date Python cannot read or ``date_bin`` cannot subtract (BC, past
    294276 AD, infinite) is hashed instead; a live span inside them is binned, and a source row
    outside them (new since) falls in a NULL bucket of its own instead of failing the count (a
    guard each row passes only when the source reaches past them: else the same buckets)."""
    dsn = servers.target_dsn
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        for table, column, kind in (
            ("ts_far", "at", "timestamp with time zone"),
            ("d_far", "d", "date"),
        ):
            query(
                dsn,
                f"CREATE TABLE public.{table} ({column} {kind} PRIMARY KEY); "
                f"INSERT INTO public.{table} SELECT '2022-01-01'::{kind} + g * interval '1 day' "
                "FROM generate_series(1, 300) g",
            )
            c = Change("public", table, "t0", (column,), (kind,), (column,), ())
            live = sql.Identifier("public", table)
            bucket, _, on_target, ranges = changes._live_buckets(cur, c, live, buckets(3))
            assert "date_bin" in bucket.as_string(cur) and ranges is not None, table
            far = ["infinity", "-infinity", "0044-03-15 BC", "0001-01-01", "294276-12-31"]
            if kind == "date":
                far[-1] = "5874897-12-31"  # past any timestamp
            query(
                dsn,
                f"CREATE TABLE public.{table}_src AS SELECT * FROM public.{table}; "
                f"INSERT INTO public.{table}_src SELECT unnest(%s::{kind}[])",
                (far,),
            )
            source = sql.Identifier("public", f"{table}_src")
            on_source = changes._per_bucket(cur, bucket, source)
            assert on_source.pop(None) == len(far), table
            assert on_source == on_target, table
            assert deleted_in(on_source, on_target, {}) == []
            # the guard only where the source reaches past the binned years: the same buckets
            assert changes._binned_span(cur, c, source) is None, table
            assert changes._binned_span(cur, c, live) is not None, table
            plain, _, plain_target, _ = changes._live_buckets(cur, c, live, buckets(3), False)
            assert "CASE" not in plain.as_string(cur) and plain_target == on_target, table
            query(dsn, f"INSERT INTO public.{table} VALUES ('0044-03-15 BC')")
            _, _, _, ranges = changes._live_buckets(cur, c, live, buckets(3))
            assert ranges is None, table  # hashed: its span reaches BC
            conn.rollback()
    finally:
        conn.close()
