"""A refresh proves the live copy equal to the source before copying anything: an unchanged
source costs no copy and no switch, and every change, on either side, in rows, sequences or
schema, makes the run copy; the target then equals the source, as after any run."""

from __future__ import annotations

import json

import pytest

from tests.support import assert_replica, query, scalar

pytestmark = [pytest.mark.e2e]

LIVE_OID = "SELECT oid FROM pg_namespace WHERE nspname = 'public'"


def _replicate(iso, *flags: str) -> tuple[str, dict]:
    """One replication to its end: its output and its run as ``status --json`` shows it."""
    proc = iso.submit("replicate", *flags)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = proc.stdout.split()[1]
    status = iso.submit("status", run_id, "--json")
    return proc.stdout + proc.stderr, json.loads(status.stdout.strip().splitlines()[-1])


def _copied(servers, iso, reason: str, *flags: str, replica: bool = True) -> dict:
    """A run that had to copy, for ``reason``; the target equals the source after it (unless
    someone's own work on the target was kept: ``replica`` false)."""
    before = scalar(servers.target_dsn, LIVE_OID)
    out, run = _replicate(iso, *flags)
    assert run["plan"]["units"] > 0 and not run["plan"]["unchanged"], run["plan"]
    assert reason in run["plan"]["reason"], run["plan"]["reason"]
    assert "plan: copies" in out and reason in out, out
    assert scalar(servers.target_dsn, LIVE_OID) != before  # a new copy was switched in
    assert {c["how"] for c in run["verification"]} == {"copied"}
    if replica:
        assert_replica(servers.source_dsn, servers.target_dsn)
    return run


def _kept(servers, iso, replica: bool = True) -> dict:
    """A run that proved the live copy equal: nothing copied, nothing switched, one ledger row."""
    before = scalar(servers.target_dsn, LIVE_OID)
    out, run = _replicate(iso)
    assert run["state"] == "succeeded", run
    assert run["plan"]["units"] == 0 and run["plan"]["unchanged"], run["plan"]
    assert "holds the source at this snapshot" in run["plan"]["reason"]
    assert "plan: copies nothing" in out and "target unchanged" in out, out
    assert run["units"] == {}
    assert {c["how"] for c in run["verification"]} == {"kept"}
    assert all(c["ok"] for c in run["verification"])
    assert scalar(servers.target_dsn, LIVE_OID) == before  # the live copy was not touched
    ledger = query(
        servers.target_dsn,
        "SELECT succeeded, target_state, tables FROM pagila_support.replication_audit "
        "WHERE run_id = %s",
        (run["run_id"],),
    )
    assert ledger == [(True, "unchanged", len(run["verification"]))], ledger
    if replica:
        assert_replica(servers.source_dsn, servers.target_dsn)
    return run


def test_a_refresh_copies_only_when_the_proof_fails(servers, isolated) -> None:
    """Unchanged: kept. Then each change makes one run copy, and the next run keeps again:
    ``--full``; a row changed on the target by hand; updates in one key range of the source;
    a sequence moved; a row inserted past the last key range; deletes; a changed column
    default; an index made on the target; a truncated
    table; a new table; a dropped table."""
    iso = isolated({"PAGILA_SPLIT_ROWS": "4000"})  # rental and payment split into ranges
    iso.pool(2)
    assert iso.submit("load").returncode == 0
    _copied(servers, iso, "no run recorded")
    _kept(servers, iso)
    _copied(servers, iso, "--full", "--full")
    _kept(servers, iso)

    query(servers.target_dsn, "UPDATE public.rental SET return_date = NULL WHERE rental_id = 7")
    _copied(servers, iso, "public.rental")
    query(
        servers.source_dsn,
        "UPDATE public.rental SET staff_id = 3 - staff_id WHERE rental_id BETWEEN 100 AND 120",
    )
    run = _copied(servers, iso, "1 of ")
    assert "public.rental" in run["plan"]["reason"]
    _kept(servers, iso)

    query(servers.source_dsn, "SELECT nextval('public.actor_actor_id_seq')")
    _copied(servers, iso, "sequences differ")
    query(  # past the last range of the split table (its sequence moves too)
        servers.source_dsn,
        "INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id) "
        "VALUES ('2030-01-01', 1, 1, 1)",
    )
    _copied(servers, iso, "sequences differ")
    query(
        servers.source_dsn,
        "DELETE FROM public.payment WHERE payment_id IN "
        "(SELECT payment_id FROM public.payment ORDER BY payment_id LIMIT 3); "
        "REFRESH MATERIALIZED VIEW public.rental_by_category",  # as the target's will be
    )
    _copied(servers, iso, "differ from the live copy: public.payment_p2022_")
    query(
        servers.source_dsn,
        "ALTER TABLE public.actor ALTER COLUMN last_update SET DEFAULT '2020-01-01'",
    )
    _copied(servers, iso, "the source's schema changed")
    query(servers.target_dsn, "CREATE INDEX film_length_idx ON public.film (length)")
    _copied(servers, iso, "the target's schema changed", replica=False)
    assert scalar(servers.target_dsn, "SELECT to_regclass('public.film_length_idx')::text")
    _kept(servers, iso, replica=False)  # the kept index is part of the copy's schema now
    query(servers.target_dsn, "DROP INDEX public.film_length_idx")
    _copied(servers, iso, "the target's schema changed")
    _kept(servers, iso)

    query(servers.source_dsn, "TRUNCATE public.film_actor")
    _copied(servers, iso, "public.film_actor")
    query(servers.source_dsn, "CREATE TABLE public.extra AS SELECT 1 AS one")
    _copied(servers, iso, "the source's schema changed")
    query(servers.source_dsn, "DROP TABLE public.extra")
    _copied(servers, iso, "the source's schema changed")
    _kept(servers, iso)
