"""Verification on a real server: equal content gives equal checksums, any change does not."""

from __future__ import annotations

import psycopg2

from pagila_tasks.replication import verify
from tests.support import query


def test_checksums_see_content_not_order(servers) -> None:
    """Same rows in another order match; one changed value or type fallback is told apart."""
    dsn = servers.source_dsn
    query(dsn, "CREATE TABLE public.a (id int, v text, ts tsvector)")
    query(dsn, "CREATE TABLE public.b (id int, v text, ts tsvector)")
    query(dsn, "CREATE TABLE public.c (id int, v text)")
    query(dsn, "CREATE TABLE public.d (id int, v text)")
    query(dsn, "INSERT INTO public.a SELECT g, 'x' || g, 'a b' FROM generate_series(1, 500) g")
    query(dsn, "INSERT INTO public.b SELECT g, 'x' || g, 'a b' FROM generate_series(500, 1, -1) g")
    query(dsn, "INSERT INTO public.c SELECT g, 'x' || g FROM generate_series(1, 500) g")
    query(dsn, "INSERT INTO public.d SELECT g, 'x' || g FROM generate_series(500, 1, -1) g")
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        m = verify.measure_all(cur, [("public", t) for t in "abcd"], checksums=True)
        assert m["public.a"] == m["public.b"] and m["public.a"][1].startswith("t:")  # tsvector
        assert m["public.c"] == m["public.d"] and m["public.c"][1].startswith("h:")
        cur.execute("UPDATE public.d SET v = 'changed' WHERE id = 250")
        cur.execute("UPDATE public.b SET ts = 'a c' WHERE id = 250")
        changed = verify.measure_all(cur, [("public", "b"), ("public", "d")], checksums=True)
        checks = verify.combine(
            {"public.a": m["public.a"], "public.c": m["public.c"]},
            {"public.a": changed["public.b"], "public.c": changed["public.d"]},
        )
        assert [c.ok for c in checks] == [False, False]
        assert all(c.source_rows == c.target_rows == 500 for c in checks)
        assert verify.measure(cur, "public", "c", checksums=False) == (500, None)
    finally:
        conn.close()
