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
