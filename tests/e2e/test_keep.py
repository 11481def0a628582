"""A refresh keeps what the target's users built: views, a materialized view, a foreign key and
a function in their own schema, grants to a reader role, default privileges, an index and a
comment on a replicated table, in swap and in place; what it cannot keep is refused before any
lock, named, and let go only with --drop-dependents."""

from __future__ import annotations

import sys
import time

import psycopg2
import pytest

from tests.e2e.test_swap import Reader
from tests.support import assert_replica, query, scalar, schema_ddl, wait_for

pytestmark = [pytest.mark.e2e]

ROLE = "pagila_test_analyst"
OWNERS = "pagila_test_owners"

BUILT_ON_TARGET = f"""
CREATE SCHEMA reporting;
CREATE VIEW reporting.recent AS SELECT rental_id, rental_date FROM public.rental;
CREATE VIEW reporting.recent_count AS SELECT count(*) AS n FROM reporting.recent;
CREATE MATERIALIZED VIEW reporting.by_staff AS
    SELECT staff_id, count(*) AS n FROM public.rental GROUP BY staff_id;
CREATE UNIQUE INDEX by_staff_key ON reporting.by_staff (staff_id);
CREATE TABLE reporting.notes (
    id serial PRIMARY KEY,
    rental_id integer CONSTRAINT notes_rental_fk REFERENCES public.rental (rental_id),
    note text
);
INSERT INTO reporting.notes (rental_id, note) VALUES (1, 'first'), (2, 'second');
CREATE FUNCTION reporting.rentals() RETURNS bigint LANGUAGE sql
    BEGIN ATOMIC SELECT count(*) FROM public.rental; END;
CREATE TRIGGER notes_touch BEFORE UPDATE ON reporting.notes
    FOR EACH ROW EXECUTE FUNCTION public.last_updated();
GRANT USAGE ON SCHEMA public TO {ROLE};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE};
GRANT USAGE ON SCHEMA reporting TO {ROLE};
GRANT SELECT ON reporting.recent, reporting.by_staff TO {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ROLE};
CREATE INDEX rental_last_update_idx ON public.rental (last_update);
CREATE INDEX payment_amount_idx ON public.payment (amount);
COMMENT ON TABLE public.rental IS 'commented on the target';
COMMENT ON VIEW reporting.recent IS 'an analyst''s view';
ALTER TABLE reporting.notes ADD COLUMN ref bigint DEFAULT nextval('public.actor_actor_id_seq');
ALTER TABLE reporting.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_known ON reporting.notes
    USING (rental_id IN (SELECT rental_id FROM public.rental));
GRANT SELECT (title) ON public.film TO {ROLE};
GRANT USAGE ON SEQUENCE public.actor_actor_id_seq TO {ROLE};
REVOKE EXECUTE ON FUNCTION public.film_in_stock(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.film_in_stock(integer, integer) TO {ROLE};
GRANT CREATE ON SCHEMA public TO {OWNERS};
ALTER TABLE public.store OWNER TO {OWNERS};
"""

READS = (
    "SELECT count(*) FROM reporting.recent",
    "SELECT sum(n) FROM reporting.by_staff",
    "SELECT reporting.rentals()",
)

NEW_RENTALS = """
INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id)
SELECT '2022-08-01'::timestamptz + g * interval '1 minute', 1 + g % 4000, 1 + g % 500, 2
FROM generate_series(1, 250) g
"""


def _make_role(servers) -> None:
    """The reader role, and a role the target's user is a member of (it may give objects to)."""
    user = psycopg2.extensions.parse_dsn(servers.target_dsn)["user"]
    for role in (ROLE, OWNERS):
        query(
            servers.admin_target,
            f"DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
    query(servers.admin_target, f'GRANT {OWNERS} TO "{user}"')


def _replica(isolated):
    """Workers of the test's own, Pagila loaded and replicated once: a replica to build on."""
    iso = isolated({})
    iso.pool(2)
    assert iso.submit("load").returncode == 0
    proc = iso.submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return iso


def _as_reader(servers, sql: str):
    """One value read on the target as the reader role (the superuser takes on its rights)."""
    conn = psycopg2.connect(servers.admin_target)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"SET ROLE {ROLE}")
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


def _assert_kept(servers) -> None:
    """Every object the target's users built exists and works on the new copy."""
    src, tgt = servers.source_dsn, servers.target_dsn
    rentals = scalar(src, "SELECT count(*) FROM public.rental")
    assert scalar(tgt, "SELECT count(*) FROM reporting.recent") == rentals
    assert scalar(tgt, "SELECT n FROM reporting.recent_count") == rentals
    assert scalar(tgt, "SELECT reporting.rentals()") == rentals
    by_staff = query(src, "SELECT staff_id, count(*) FROM public.rental GROUP BY 1 ORDER BY 1")
    assert query(tgt, "SELECT staff_id, n FROM reporting.by_staff ORDER BY 1") == by_staff
    assert scalar(tgt, "SELECT to_regclass('reporting.by_staff_key') IS NOT NULL")
    fk = query(
        tgt,
        "SELECT confrelid::regclass::text, convalidated FROM pg_constraint "
        "WHERE conname = 'notes_rental_fk'",
    )
    assert fk == [("rental", True)] or fk == [("public.rental", True)], fk
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        query(tgt, "INSERT INTO reporting.notes (rental_id, ref) VALUES (-1, 0)")
    assert scalar(tgt, "SELECT count(*) FROM pg_trigger WHERE tgname = 'notes_touch'") == 1
    assert _as_reader(servers, "SELECT count(*) FROM public.rental") == rentals
    assert _as_reader(servers, "SELECT count(*) FROM reporting.recent") == rentals
    assert _as_reader(servers, "SELECT count(*) FROM reporting.by_staff") == len(by_staff)
    assert scalar(tgt, "SELECT to_regclass('public.rental_last_update_idx') IS NOT NULL")
    partitioned = "'public.payment_amount_idx'::regclass"
    assert scalar(tgt, f"SELECT indisvalid FROM pg_index WHERE indexrelid = {partitioned}")
    parts = scalar(tgt, f"SELECT count(*) FROM pg_inherits WHERE inhparent = {partitioned}")
    assert parts == scalar(
        src, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.payment'::regclass"
    )
    assert scalar(tgt, "SELECT obj_description('public.rental'::regclass, 'pg_class')") == (
        "commented on the target"
    )
    assert scalar(tgt, "SELECT obj_description('reporting.recent'::regclass, 'pg_class')") == (
        "an analyst's view"
    )
    policy = (
        "SELECT count(*) FROM pg_depend d JOIN pg_policy p ON p.oid = d.objid "
        "WHERE p.polname = 'notes_known' AND d.refobjid = 'public.rental'::regclass"
    )
    assert scalar(tgt, policy) == 1
    default = (  # the column default reads the new copy's sequence
        "SELECT count(*) FROM pg_depend d JOIN pg_attrdef a ON a.oid = d.objid "
        "WHERE a.adrelid = 'reporting.notes'::regclass "
        "AND d.refobjid = 'public.actor_actor_id_seq'::regclass"
    )
    assert scalar(tgt, default) == 1
    assert scalar(
        tgt,
        "SELECT attacl IS NOT NULL FROM pg_attribute "
        "WHERE attrelid = 'public.film'::regclass AND attname = 'title'",
    )
    assert scalar(
        tgt, f"SELECT has_sequence_privilege('{ROLE}', 'public.actor_actor_id_seq', 'USAGE')"
    )
    in_stock = "'public.film_in_stock(integer, integer)'"
    assert scalar(tgt, f"SELECT has_function_privilege('{ROLE}', {in_stock}, 'EXECUTE')")
    public_may = (
        "SELECT count(*) FROM pg_proc, aclexplode(proacl) a "
        f"WHERE pg_proc.oid = {in_stock}::regprocedure AND a.grantee = 0"
    )
    assert scalar(tgt, public_may) == 0
    assert (
        scalar(
            tgt, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.store'::regclass"
        )
        == OWNERS
    )
    defaults = scalar(
        tgt,
        "SELECT count(*) FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace "
        "WHERE n.nspname = 'public'",
    )
    assert defaults == 1
    assert scalar(tgt, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pagila\\_%%'") == 1


def test_a_refresh_keeps_what_the_targets_users_built(servers, isolated) -> None:
    """After a first run, objects built on the target around the replica (in another schema,
    grants, default privileges, an index and comments on a replicated table) survive a swap run
    and an in-place run over a changed source, and work on the new copy."""
    _make_role(servers)
    iso = isolated({})
    iso.pool(2)
    assert iso.submit("load").returncode == 0
    proc = iso.submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    query(servers.target_dsn, BUILT_ON_TARGET)
    query(servers.source_dsn, NEW_RENTALS)
    readers = [Reader(servers.target_dsn, sql) for sql in READS]
    for reader in readers:
        reader.start()
    wait_for(lambda: all(r.values for r in readers), 60, "every reader to read once")
    proc = iso.submit("replicate")
    ended = time.monotonic()
    for reader in readers:
        reader.finish_after(ended)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "keeps" in proc.stdout, proc.stdout
    _assert_kept(servers)
    for reader in readers:  # readers never saw a kept object missing, nor a mix of copies
        assert reader.errors == [], reader.errors[:3]
        assert len(set(reader.values)) == 2, (reader.sql, set(reader.values))
    before = schema_ddl(servers.target_dsn, ("reporting",))
    iso.close()

    query(servers.source_dsn, NEW_RENTALS.replace("2022-08-01", "2022-09-01"))
    inplace = isolated({"PAGILA_REPLACE": "in-place"})
    inplace.pool(2, prefix="i")
    proc = inplace.submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_kept(servers)
    assert schema_ddl(servers.target_dsn, ("reporting",)) == before
    query(servers.target_dsn, "DROP INDEX public.rental_last_update_idx")
    query(servers.target_dsn, "DROP INDEX public.payment_amount_idx")
    query(servers.target_dsn, "COMMENT ON TABLE public.rental IS NULL")
    # pg_dump orders objects by their dependencies, those of other schemas' objects included:
    # the source has none of these, so the order is compared without them
    query(servers.target_dsn, "DROP SCHEMA reporting CASCADE")
    assert_replica(servers.source_dsn, servers.target_dsn)


def test_what_cannot_be_kept_is_refused_before_any_lock(servers, isolated) -> None:
    """A table someone created inside a replicated schema and a column elsewhere whose type is a
    replicated one cannot be kept: the run is refused (exit 2) before any lock, naming both,
    with the target unchanged; with --drop-dependents the run drops them and says so."""
    iso = _replica(isolated)
    query(
        servers.target_dsn,
        "CREATE TABLE public.my_notes (id int); CREATE SCHEMA mine; "
        "CREATE TABLE mine.rated (id int, rating public.mpaa_rating); "
        "CREATE VIEW mine.keepable AS SELECT count(*) AS n FROM public.film",
    )
    before = schema_ddl(servers.target_dsn, ("public", "mine"))
    proc = iso.submit("replicate")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "table public.my_notes" in line and "table mine.rated" in line, line
    assert "--drop-dependents" in line and "mine.keepable" not in line, line
    assert iso.redis.keys("pagila:lock*") == []
    assert schema_ddl(servers.target_dsn, ("public", "mine")) == before

    proc = iso.submit("replicate", "--drop-dependents")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "public.my_notes" in proc.stdout, proc.stdout
    assert scalar(servers.target_dsn, "SELECT to_regclass('public.my_notes')") is None
    columns = query(
        servers.target_dsn,
        "SELECT attname FROM pg_attribute WHERE attrelid = 'mine.rated'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    assert columns == [("id",)]
    films = scalar(servers.source_dsn, "SELECT count(*) FROM public.film")
    assert scalar(servers.target_dsn, "SELECT n FROM mine.keepable") == films
    query(servers.target_dsn, "DROP SCHEMA mine CASCADE")  # see the first test
    assert_replica(servers.source_dsn, servers.target_dsn)


def _replica_state(dsn: str) -> tuple:
    """The live copy as readers see it: DDL, and every table's count and checksum."""
    from tests.support import checksums, tables

    return schema_ddl(dsn), checksums(dsn, tables(dsn))


def test_a_key_the_new_rows_break_fails_the_run_before_the_switch(servers, isolated) -> None:
    """A foreign key from a target user's table to a replicated table that the new copy's rows
    violate fails the run before the switch, naming the key; the live copy is untouched and the
    key still holds on it."""
    iso = _replica(isolated)
    query(
        servers.target_dsn,
        "CREATE SCHEMA reporting; CREATE TABLE reporting.notes (rental_id integer "
        "CONSTRAINT notes_rental_fk REFERENCES public.rental (rental_id)); "
        "INSERT INTO reporting.notes VALUES (16044)",
    )
    query(servers.source_dsn, "DELETE FROM public.payment WHERE rental_id = 16044")
    query(servers.source_dsn, "DELETE FROM public.rental WHERE rental_id = 16044")
    before = _replica_state(servers.target_dsn)
    code, out = iso.submit_json("replicate")
    assert code == 1, out
    assert "notes_rental_fk" in out["error"] and out["target_state"] == "unchanged", out
    assert _replica_state(servers.target_dsn) == before
    assert scalar(servers.target_dsn, "SELECT count(*) FROM public.rental") == 16044
    assert (
        scalar(
            servers.target_dsn,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'notes_rental_fk' AND convalidated",
        )
        == 1
    )
    assert (
        scalar(
            servers.target_dsn,
            "SELECT count(*) FROM pg_namespace WHERE nspname "
            "LIKE 'pagila\\_stage%%' OR nspname LIKE 'pagila\\_old%%'",
        )
        == 0
    )


def test_a_schema_no_run_put_there_is_refused_without_overwrite(servers, isolated) -> None:
    """On a target replicated once (public), a schema of its own (payroll) named in --schemas is
    refused before any lock, naming it, unless --overwrite-target; a schema that merely carries a
    staging copy's name is refused and left as it is."""
    iso = _replica(isolated)
    query(servers.source_dsn, "CREATE SCHEMA payroll; CREATE TABLE payroll.src (id int)")
    query(servers.target_dsn, "CREATE SCHEMA payroll; CREATE TABLE payroll.salaries (id int)")
    query(servers.target_dsn, "INSERT INTO payroll.salaries VALUES (1), (2)")
    proc = iso.submit("replicate", "--schemas", "public,payroll")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "payroll" in line and "--overwrite-target" in line and "public" not in line, line
    assert scalar(servers.target_dsn, "SELECT count(*) FROM payroll.salaries") == 2
    assert iso.redis.keys("pagila:lock*") == []

    from pagila_tasks.replication.staging import stage_name

    squat = stage_name("public")
    query(servers.target_dsn, f"CREATE SCHEMA {squat}; CREATE TABLE {squat}.mine (id int)")
    proc = iso.submit("replicate")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert squat in proc.stderr, proc.stderr
    assert scalar(servers.target_dsn, f"SELECT count(*) FROM {squat}.mine") == 0
    query(servers.target_dsn, f"DROP SCHEMA {squat} CASCADE")

    code, out = iso.submit_json("replicate", "--schemas", "public,payroll", "--overwrite-target")
    assert code == 0, out
    assert scalar(servers.target_dsn, "SELECT to_regclass('payroll.salaries')") is None
    assert scalar(servers.target_dsn, "SELECT to_regclass('payroll.src') IS NOT NULL")


def test_a_previous_copy_something_still_depends_on_is_not_dropped(servers, isolated) -> None:
    """A registered previous copy that a view elsewhere still reads (made after the run read
    what to keep) is left for later, not dropped with the view by CASCADE; the run succeeds."""
    iso = _replica(isolated)
    query(
        servers.target_dsn,
        "CREATE SCHEMA pagila_old_zz_0; CREATE TABLE pagila_old_zz_0.t (id int); "
        "INSERT INTO pagila_support.replication_schemas (name, kind, live, run_id) "
        "VALUES ('pagila_old_zz_0', 'old', 'public', 'replicate-x'); "
        "CREATE SCHEMA reporting; CREATE VIEW reporting.v AS SELECT id FROM pagila_old_zz_0.t",
    )
    code, out = iso.submit_json("replicate")
    assert code == 0, out
    assert scalar(servers.target_dsn, "SELECT to_regclass('reporting.v') IS NOT NULL")
    assert scalar(servers.target_dsn, "SELECT to_regnamespace('pagila_old_zz_0') IS NOT NULL")


def test_a_failed_in_place_run_puts_back_what_it_took_down(servers, isolated) -> None:
    """An in-place run that fails after its reset (a checksum mismatch at verification) puts
    back what the target's users built around the schemas (its errback), and the next run keeps
    it as usual."""
    _make_role(servers)
    iso = isolated({"PAGILA_REPLACE": "in-place"})
    plain = iso.pool(2)
    assert iso.submit("load").returncode == 0
    assert iso.submit("replicate").returncode == 0
    query(servers.target_dsn, BUILT_ON_TARGET)
    plain.stop()
    iso.env["PAGILA_TEST_FAULT"] = "corrupt-stage"
    iso.pool(1, prefix="cp", queues="copy")
    faulty = iso.pool(
        1, prefix="ctl", queues="control", argv=[sys.executable, "-m", "tests.fault_worker"]
    )
    code, out = iso.submit_json("replicate")
    assert code == 1, out
    assert out["target_state"] == "partly replaced", out.get("error")
    rentals = scalar(servers.target_dsn, "SELECT count(*) FROM public.rental")
    assert scalar(servers.target_dsn, "SELECT count(*) FROM reporting.recent") == rentals
    fk = "SELECT count(*) FROM pg_constraint WHERE conname = 'notes_rental_fk'"
    assert scalar(servers.target_dsn, fk) == 1
    assert scalar(servers.target_dsn, "SELECT to_regclass('reporting.by_staff') IS NOT NULL")
    assert _as_reader(servers, "SELECT count(*) FROM public.rental") == rentals
    faulty.stop()
    iso.pool(1, prefix="ok", queues="control")
    proc = iso.submit("replicate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_kept(servers)
