"""Replication end to end: pagila-submit, two real workers, real source and target servers."""

from __future__ import annotations

import re

import pytest

from tests.support import assert_replica, query, scalar, submit, submit_json

pytestmark = pytest.mark.e2e


def test_run_replicates_pagila_on_both_workers(workers: list[int], servers) -> None:
    """run = load + replicate: equal rows, checksums, sequences, DDL; copies on both workers."""
    code, out = submit_json("run")
    assert code == 0, out
    assert out["kind"] == "replicate" and out["state"] == "succeeded"
    assert len(out["units"]) == 21  # 14 tables + 7 payment partitions
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.payment") == 16049
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.rental_by_category") == scalar(
        servers.source_dsn, "SELECT count(*) FROM public.rental_by_category"
    )
    used = {u["worker"].split("@")[0] for u in out["units"].values()}
    assert used == {"w1", "w2"}, used
    assert all(c["ok"] for c in out["verification"])
    audit = query(
        servers.target_dsn,
        "SELECT run_id, succeeded, tables, rows FROM pagila_support.replication_audit",
    )
    assert audit == [(out["run_id"], True, 21, sum(u["rows"] for u in out["units"].values()))]
    assert (
        scalar(servers.target_dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        is False
    )

    proc = submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"public\.rental\s+16044\s+16044\s+.*ok", proc.stdout), proc.stdout
    assert_replica(servers.source_dsn, servers.target_dsn)
    assert (
        scalar(
            servers.target_dsn,
            "SELECT count(*) FROM pagila_support.replication_audit WHERE succeeded",
        )
        == 2
    )
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.rental") == 16044


def test_bad_table_lists_are_refused_before_the_lock(workers: list[int], servers) -> None:
    """Unknown tables, empty lists and views exit 2 and leave the lock free."""
    assert submit("load").returncode == 0
    for tables_arg, words in (
        ("nope", "unknown table"),
        ("", "empty"),
        ("film_list", "a view"),
        ("rental,", "empty"),
    ):
        proc = submit("replicate", "--tables", tables_arg)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr
    from tests.support import redis_client

    assert redis_client().get("pagila:lock") is None


def test_a_table_failing_every_time_fails_the_run_cleanly(workers: list[int], servers) -> None:
    """A table the target rejects: after retries the run fails naming it, once; lock freed."""
    assert submit_json("run")[0] == 0
    tgt = servers.target_dsn
    query(tgt, "TRUNCATE public.language CASCADE")
    query(tgt, "ALTER TABLE public.language ALTER COLUMN name TYPE varchar(2)")
    before_actor = scalar(tgt, "SELECT count(*) FROM public.actor")
    code, out = submit_json("replicate", "--tables", "language,actor")
    assert code == 1, out
    assert out["state"] == "failed"
    assert "public.language" in out["error"]
    rows = query(
        tgt,
        "SELECT succeeded, error FROM pagila_support.replication_audit WHERE run_id = %s",
        (out["run_id"],),
    )
    assert len(rows) == 1 and rows[0][0] is False and "public.language" in rows[0][1], out["error"]
    assert scalar(tgt, "SELECT count(*) FROM public.language") == 0  # nothing half-written
    assert scalar(tgt, "SELECT count(*) FROM public.actor") == before_actor
    lang = out["units"]["public.language"]
    assert lang["state"] == "failed" and lang["attempt"] >= 3  # first try + at least 2 retries
    from tests.support import redis_client

    assert redis_client().get("pagila:lock") is None
    # the lock is free: the next run can start (and repair the table) at once
    query(tgt, "ALTER TABLE public.language ALTER COLUMN name TYPE character(20)")
    code, out = submit_json("replicate")
    assert code == 0, out


GENERAL_SCHEMA = r"""
CREATE SCHEMA other;
CREATE TABLE public.ident (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE public.composite (a int, b text, c jsonb, PRIMARY KEY (a, b));
CREATE TABLE public."MixedCase" ("Id" int PRIMARY KEY, "Some Column" text);
CREATE TABLE public."order" (id int PRIMARY KEY, "select" text);
CREATE TABLE public.nokey (x int, y text[], z bytea);
CREATE TABLE public.listed (id int, region text, amount numeric) PARTITION BY LIST (region);
CREATE TABLE public.listed_eu PARTITION OF public.listed FOR VALUES IN ('eu');
CREATE TABLE public.listed_us PARTITION OF public.listed FOR VALUES IN ('us');
CREATE TABLE public.hashed (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
CREATE TABLE public.hashed_0 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.hashed_1 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE other.things (id serial PRIMARY KEY, doc jsonb, tags text[], at timestamptz);
CREATE SEQUENCE other.free_standing START 7;
INSERT INTO public.ident (v) SELECT 'row ' || g FROM generate_series(1, 500) g;
INSERT INTO public.composite VALUES (1, 'a', '{"k": [1, 2]}'), (1, 'b', NULL), (2, 'a', 'null');
INSERT INTO public."MixedCase" VALUES (1, E'tab\there'), (2, E'new\nline'), (3, E'back\\slash');
INSERT INTO public."order" VALUES (1, 'from'), (2, NULL);
INSERT INTO public.nokey VALUES (1, ARRAY['a', NULL, 'c"q'], '\x00ff10'),
    (1, ARRAY['a'], '\x00ff10'), (NULL, NULL, NULL);
INSERT INTO public.listed SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g * 1.5
    FROM generate_series(1, 200) g;
INSERT INTO public.hashed SELECT g, md5(g::text) FROM generate_series(1, 300) g;
INSERT INTO other.things (doc, tags, at) SELECT jsonb_build_object('n', g, 's', E'x\ty'),
    ARRAY[g::text], '2024-01-01 10:00+02'::timestamptz + g * interval '1 hour'
    FROM generate_series(1, 100) g;
SELECT nextval('other.free_standing'), nextval('other.free_standing');
"""


def test_generality_beyond_pagila(servers, isolated) -> None:
    """A source with identities, composite keys, quoted names, partitions and odd data copies."""
    if servers.admin_source is None:
        pytest.skip("needs the stack's admin access to create a second source database")
    owner = scalar(servers.source_dsn, "SELECT current_user")
    admin = servers.admin_source
    query(admin, "DROP DATABASE IF EXISTS general")
    query(admin, f'CREATE DATABASE general OWNER "{owner}"')
    general = re.sub(r"/pagila$", "/general", servers.source_dsn)
    query(general, GENERAL_SCHEMA)
    env = {
        "PAGILA_SOURCE_DSN": general,
        "PAGILA_SCHEMAS": "public,other",
        "PAGILA_SPLIT_ROWS": "100",  # split ident and hashed leaves into key ranges too
    }
    try:
        iso = isolated(env)
        pool = iso.pool(2, prefix="g")
        code, out = iso.submit_json("replicate")
        assert code == 0, (out, pool.log_tail())
        assert any("#" in name for name in out["units"]), out["units"].keys()
        assert_replica(general, servers.target_dsn, ("public", "other"))
        assert scalar(servers.target_dsn, "SELECT last_value FROM other.free_standing") == 8
        assert scalar(servers.target_dsn, "SELECT count(*) FROM public.listed") == 200
    finally:
        query(servers.target_dsn, "DROP SCHEMA IF EXISTS other CASCADE")
        query(admin, "DROP DATABASE IF EXISTS general WITH (FORCE)")
