"""A refresh proves the live copy equal to the source before copying anything: an unchanged
source costs no copy and no switch; rows changed on either side (with the schemas as the last
switch left them) are applied to the live copy in place, in one verified transaction; a changed
schema, a table without a key, or a table changed too much makes a full copy. The target then
equals the source, as after any run."""

from __future__ import annotations

import json
import sys

import pytest

from tests.support import assert_replica, query, scalar, state_of, wait_for

pytestmark = [pytest.mark.e2e]

LIVE_OID = "SELECT oid FROM pg_namespace WHERE nspname = 'public'"


SINCE = "1 found from the rows written since the last proof, 0 key by key"
BY_KEY = "0 found from the rows written since the last proof, 1 key by key"


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


def _kept(servers, iso, replica: bool = True, recorded: str = "") -> dict:
    """A run that proved the live copy equal: nothing copied, nothing switched, one ledger row
    (``recorded``: what its reason says of the measures shown to hold, e.g. "21 on the target")."""
    before = scalar(servers.target_dsn, LIVE_OID)
    out, run = _replicate(iso)
    assert run["state"] == "succeeded", run
    assert run["plan"]["units"] == 0 and run["plan"]["unchanged"], run["plan"]
    assert "holds the source at this snapshot" in run["plan"]["reason"]
    assert recorded in run["plan"]["reason"], run["plan"]["reason"]
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


def _applied(servers, iso, reason: str, changed: dict[str, str], fetches: int = 0) -> dict:
    """A run that applied the rows that differ in place: no new copy switched in, the ``changed``
    tables say what was written (the others kept), ``fetches`` tables' rows fetched by a copy
    (those compared key by key; the rows written since are read with the comparison), one
    ledger row, the target equals the source."""
    before = scalar(servers.target_dsn, LIVE_OID)
    out, run = _replicate(iso)
    assert run["state"] == "succeeded", run
    assert run["plan"]["units"] == fetches, run["plan"]
    assert reason in run["plan"]["reason"] and "applies the changes in place" in out, out
    hows = {c["table"]: c["how"] for c in run["verification"]}
    assert {t: h for t, h in hows.items() if h != "kept"} == changed, hows
    assert all(c["ok"] for c in run["verification"])
    assert scalar(servers.target_dsn, LIVE_OID) == before  # the live copy itself was written
    ledger = query(
        servers.target_dsn,
        "SELECT succeeded, target_state FROM pagila_support.replication_audit WHERE run_id = %s",
        (run["run_id"],),
    )
    assert ledger == [(True, "changed in place")], ledger
    wait_for(  # its work tables go once it has ended (its submitter does not wait for them)
        lambda: (
            not query(
                servers.target_dsn,
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pagila\\_changes\\_%%'",
            )
        ),
        10,
        "the run's work schema dropped",
    )
    assert_replica(servers.source_dsn, servers.target_dsn)
    return run


def _in_place(updated: int = 0, inserted: int = 0, deleted: int = 0) -> str:
    return f"changed in place: {updated} updated, {inserted} inserted, {deleted} deleted"


def test_a_refresh_copies_only_when_the_proof_fails(servers, isolated) -> None:
    """Unchanged: kept. Rows changed on either side are applied in place, and the next run
    keeps again: a row changed on the target by hand; updates in one key range of the source;
    a sequence moved; a row inserted past the last key range; deletes. Each of these makes a
    full copy instead: ``--full``; a changed column default; an index made on the target; a
    truncated table (every row differs); a new table; a dropped table; a changed table
    without a key. Then a date key's new value past the binned years, beside a delete."""
    iso = isolated({"PAGILA_SPLIT_ROWS": "4000"})  # rental and payment split into ranges
    iso.pool(2)
    assert iso.submit("load").returncode == 0
    _copied(servers, iso, "no run recorded")
    _kept(servers, iso)
    _copied(servers, iso, "--full", "--full")
    _kept(servers, iso)

    # the source wrote nothing since: only comparing key by key finds the row
    query(servers.target_dsn, "UPDATE public.rental SET return_date = NULL WHERE rental_id = 7")
    _applied(servers, iso, BY_KEY, {"public.rental": _in_place(updated=1)}, fetches=1)
    query(
        servers.source_dsn,
        "UPDATE public.rental SET staff_id = 3 - staff_id WHERE rental_id BETWEEN 100 AND 120",
    )
    run = _applied(servers, iso, SINCE, {"public.rental": _in_place(updated=21)})
    assert "1 of " in run["plan"]["reason"] and "public.rental" in run["plan"]["reason"]
    # both sides changed: what the source wrote since does not account for the difference
    query(servers.target_dsn, "UPDATE public.rental SET return_date = NULL WHERE rental_id = 9")
    query(
        servers.source_dsn, "UPDATE public.rental SET staff_id = 3 - staff_id WHERE rental_id = 200"
    )
    _applied(servers, iso, BY_KEY, {"public.rental": _in_place(updated=2)}, fetches=1)
    # its trigger (which would stamp last_update) was off for the write, and is on again
    assert (
        scalar(
            servers.target_dsn,
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'last_updated' "
            "AND tgrelid = 'public.rental'::regclass",
        )
        == "O"
    )
    # the tables the apply wrote (rental) are taken from its record too: not hashed again
    _kept(servers, iso, recorded="and 21 on the target shown unwritten since")

    query(servers.source_dsn, "SELECT nextval('public.actor_actor_id_seq')")
    _applied(servers, iso, "sequences differ", {})
    query(  # past the last range of the split table (its sequence moves too)
        servers.source_dsn,
        "INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id) "
        "VALUES ('2030-01-01', 1, 1, 1)",
    )
    _applied(servers, iso, SINCE, {"public.rental": _in_place(inserted=1)})
    query(
        servers.source_dsn,
        "DELETE FROM public.payment WHERE payment_id IN "
        "(SELECT payment_id FROM public.payment ORDER BY payment_id LIMIT 3); "
        "REFRESH MATERIALIZED VIEW public.rental_by_category; "  # as the target's will be
        # a two-column key: its deleted keys are found by its leading column's ranges, or
        # by hashed buckets while it has no statistics (tests/integration/test_change_buckets)
        "DELETE FROM public.film_actor WHERE actor_id = 1 AND film_id IN (1, 23)",
    )
    run = _applied(
        servers,
        iso,
        "3 found from the rows written since the last proof, 0 key by key",
        {
            "public.payment_p2022_01": _in_place(deleted=1),
            "public.payment_p2022_06": _in_place(deleted=2),
            "public.film_actor": _in_place(deleted=2),
        },
    )
    _kept(servers, iso)
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
    _copied(servers, iso, "public.film_actor: 5460 of 5460 rows differ")  # 2 deleted above
    query(servers.source_dsn, "CREATE TABLE public.extra AS SELECT 1 AS one")
    _copied(servers, iso, "the source's schema changed")
    query(servers.source_dsn, "INSERT INTO public.extra VALUES (2)")
    _copied(servers, iso, "public.extra has no primary key or unique NOT NULL key")
    query(servers.source_dsn, "DROP TABLE public.extra")
    _copied(servers, iso, "the source's schema changed")
    _kept(servers, iso)

    # a date key the source takes past the binned years while it deletes another: the deleted
    # key is found by the key's bins, each value guarded (changes._binned_span)
    query(
        servers.source_dsn,
        "CREATE TABLE public.stamps (at timestamptz PRIMARY KEY); INSERT INTO public.stamps "
        "SELECT '2022-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g",
    )
    _copied(servers, iso, "the source's schema changed")
    query(
        servers.source_dsn,
        "INSERT INTO public.stamps VALUES ('infinity'); "
        "DELETE FROM public.stamps WHERE at = '2022-01-01'::timestamptz + interval '24 hours'",
    )
    _applied(servers, iso, SINCE, {"public.stamps": _in_place(inserted=1, deleted=1)})
    _kept(servers, iso)


def test_a_write_on_the_target_after_the_proof_fails_the_apply_and_changes_nothing(
    servers, isolated
) -> None:
    """Someone updates a row of ``rental`` on the target after the proof measured it and before
    the apply (a fault worker runs the callback): the apply finds the table written since the
    proof, measures it whole, finds it unlike the source and commits nothing. The target is as
    it was with that one write (DDL, every table's count and md5, sequences, matviews), the run
    fails saying so, and the next run makes a full copy equal to the source."""
    iso = isolated({"PAGILA_TEST_FAULT": "write-before-apply"})
    iso.pool(1, prefix="cp", queues="copy")
    iso.pool(1, prefix="ctl", queues="control", argv=[sys.executable, "-m", "tests.fault_worker"])
    assert iso.submit("load").returncode == 0
    _copied(servers, iso, "no run recorded")
    query(
        servers.source_dsn,
        "UPDATE public.rental SET staff_id = 3 - staff_id WHERE rental_id BETWEEN 100 AND 120",
    )
    before = state_of(servers.target_dsn)
    proc = iso.submit("replicate")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "could not be applied in place, nothing changed" in proc.stdout + proc.stderr
    assert "public.rental" in proc.stdout + proc.stderr
    after = state_of(servers.target_dsn)
    written = after["tables"].pop("public.rental")
    assert written != before["tables"].pop("public.rental")  # the one write
    assert after == before
    five = "SELECT return_date::date::text FROM public.rental WHERE rental_id = 5"
    assert scalar(servers.target_dsn, five) == "2000-01-01"
    assert not query(  # its work tables are gone
        servers.target_dsn,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pagila\\_changes\\_%%'",
    )
    _copied(servers, iso, "no run recorded")  # the fingerprint was forgotten: a full copy
