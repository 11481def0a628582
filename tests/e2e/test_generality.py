"""Any PostgreSQL database, not only Pagila: our own source databases of many shapes replicate
exactly (pg_dump -s, rows, sequences, populated matviews, large objects), twice (the second run
replaces a copy that differs), in both replace modes; what cannot be replicated is refused
before the target is touched."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg2
import pytest

from pagila_tasks.replication import catalog
from tests import shapes
from tests.support import assert_replica, query, run_schemas, scalar, state_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def admin(servers):
    if servers.admin_source is None:
        pytest.skip("needs the stack's admin access to create source databases")
    return servers


@pytest.fixture
def make_source(admin) -> Iterator[Callable[..., str]]:
    """Creates source databases of the test's shapes (see :func:`tests.shapes.make_database`)
    and drops them when the test ends, whatever its outcome."""
    made: list[str] = []

    def make(name: str, *scripts: str) -> str:
        made.append(name)
        return shapes.make_database(admin, name, *scripts)

    yield make
    for name in made:
        shapes.drop_database(admin, name)


@pytest.mark.parametrize("replace", ["swap", "in-place"])
def test_many_shapes_replicate_exactly(admin, make_source, isolated, replace: str) -> None:
    """Several schemas with keys and views across them, names with capitals, dots, spaces,
    quotes and non-ASCII letters, inheritance, exclusion, ICU collations, identities, NOT VALID
    constraints, column-less tables, circular keys, a matview over a function, large objects
    and a database search_path that hides schemas: replicated exactly, then again after the
    source changed."""
    scripts = [shapes.MANY_SHAPES, shapes.ROWS, shapes.SEARCH_PATH.format(db="shapes")]
    if shapes.has_icu(admin.source_dsn):
        scripts.append(shapes.ICU)
    source = make_source("shapes", *scripts)
    iso = isolated(
        {
            "PAGILA_SOURCE_DSN": source,
            "PAGILA_SCHEMAS": shapes.SCHEMAS_ENV,
            "PAGILA_SPLIT_ROWS": "100",  # split ident and hashed leaves into key ranges
            "PAGILA_REPLACE": replace,
        }
    )
    pool = iso.pool(2, prefix="g")
    code, out = iso.submit_json("replicate")
    assert code == 0, (out, pool.log_tail())
    assert any("#" in name for name in out["units"]), out["units"].keys()
    assert "large objects" in out["units"]
    assert_replica(source, admin.target_dsn, shapes.SCHEMAS)
    assert scalar(admin.target_dsn, "SELECT last_value FROM other.free_standing") == 8
    assert scalar(admin.target_dsn, "SELECT count(*) FROM other.nocols") == 3
    assert scalar(admin.target_dsn, "SELECT sum(g) FROM other.genonly") == 28

    query(source, shapes.CHANGES)
    code, out = iso.submit_json("replicate")
    assert code == 0, (out, pool.log_tail())
    assert_replica(source, admin.target_dsn, shapes.SCHEMAS)
    assert scalar(admin.target_dsn, "SELECT n FROM other.counts") == 25  # refreshed anew
    assert run_schemas(admin.target_dsn) == []
    code, out = iso.submit_json("replicate")  # every shape measures the same on both sides
    assert code == 0 and out["plan"]["unchanged"], out.get("plan")
    assert out["target_state"] == "unchanged" and out["units"] == {}, out


def test_more_shapes_replicate_exactly(admin, make_source, isolated) -> None:
    """Multi-level partitions with a default one and a partition in another schema, a key to a
    partitioned table, dropped columns, composite/range/money/xml/geometric/array types, odd
    sequences, rules, multiple inheritance, an unlogged table, a BEGIN ATOMIC body, an unpopulated
    matview, a trigger that must not fire on the copied rows, database defaults that change the
    text form of intervals and bytea: exact, twice."""
    settings = shapes.SESSION_SETTINGS.format(db="more")
    source = make_source("more", shapes.MORE_SHAPES, shapes.MORE_ROWS, settings)
    iso = isolated(
        {
            "PAGILA_SOURCE_DSN": source,
            "PAGILA_SCHEMAS": "extra,parts",
            "PAGILA_SPLIT_ROWS": "20",
        }
    )
    pool = iso.pool(2, prefix="m")
    for flags in ((), ("--full",)):
        code, out = iso.submit_json("replicate", *flags)
        assert code == 0, (out, pool.log_tail())
        assert_replica(source, admin.target_dsn, shapes.MORE_SCHEMAS)
        assert 'extra."hash#tag"#1of3' in out["units"], sorted(out["units"])
        assert 'extra."hash#tag"' in out["tables"], out["tables"]
        assert scalar(admin.target_dsn, "SELECT v FROM extra.trig") == "lower"
        assert run_schemas(admin.target_dsn) == []
    code, out = iso.submit_json("replicate")  # every shape measures the same on both sides
    assert code == 0 and out["plan"]["unchanged"], out.get("plan")


def test_trusted_extensions_are_created_and_kept(admin, make_source, isolated) -> None:
    """uuid-ossp, hstore, pgcrypto and intarray in a replicated schema and citext in another
    are created on the target by its owner and kept by the next run, which replaces the schema
    in place around them (an extension cannot move between copies)."""
    if not shapes.available(admin.target_dsn, shapes.NEEDED_EXTENSIONS):
        pytest.skip("the target server has no contrib extensions")
    source = make_source("exts", shapes.EXTENSIONS)
    iso = isolated({"PAGILA_SOURCE_DSN": source})
    pool = iso.pool(2, prefix="x")
    kept = []
    for flags in ((), ("--full",)):  # the second copies the unchanged source anyway
        code, out = iso.submit_json("replicate", *flags)
        assert code == 0, (out, pool.log_tail())
        assert out["target_state"] == "replaced in place"
        assert_replica(source, admin.target_dsn)
        kept.append(query(admin.target_dsn, "SELECT extname, oid FROM pg_extension ORDER BY 1"))
    assert kept[0] == kept[1]  # the second run dropped and re-created none
    found = dict(
        query(
            admin.target_dsn,
            "SELECT extname, extnamespace::regnamespace::text FROM pg_extension "
            "WHERE extname <> 'plpgsql'",
        )
    )
    assert found == {
        "uuid-ossp": "public",
        "hstore": "public",
        "pgcrypto": "public",
        "intarray": "public",
        "citext": "extensions",
    }
    uuid = "SELECT public.uuid_generate_v4() IS NOT NULL"
    assert scalar(admin.target_dsn, uuid)
    assert scalar(admin.target_dsn, "SELECT count(*) FROM public.uses") == 50
    assert run_schemas(admin.target_dsn) == []


def test_an_extension_the_target_user_cannot_create_is_refused_first(
    admin, make_source, isolated
) -> None:
    """An extension only a superuser may create: the run is refused before any lock, naming the
    extension and the statement an administrator must run; the target is left as it was."""
    if not shapes.available(admin.target_dsn, ("pg_stat_statements",)):
        pytest.skip("the target server has no pg_stat_statements")
    source = make_source("untrusted")
    query(
        admin.admin_source.replace("/pagila?", "/untrusted?"),
        "CREATE EXTENSION pg_stat_statements WITH SCHEMA public; "
        "CREATE TABLE public.t (id int PRIMARY KEY); "
        "CREATE VIEW public.top AS SELECT calls FROM public.pg_stat_statements",
    )
    query(admin.target_dsn, "CREATE TABLE public.kept (x int); INSERT INTO public.kept VALUES (1)")
    query(
        admin.target_dsn,
        "CREATE SCHEMA pagila_support; "
        "CREATE TABLE pagila_support.replication_audit (run_id text); "
        "CREATE TABLE pagila_support.replication_live (name text PRIMARY KEY, run_id text NOT NULL,"
        " switched_at timestamptz NOT NULL DEFAULT now()); "
        "INSERT INTO pagila_support.replication_live VALUES ('public', 'replicate-x')",
    )  # a replica of public: only the extension stops it
    before = state_of(admin.target_dsn)
    iso = isolated({"PAGILA_SOURCE_DSN": source})
    iso.pool(1, prefix="u")
    proc = iso.submit("replicate")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "pg_stat_statements" in line, line
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;" in line
    assert iso.redis.get("pagila:lock") is None
    assert state_of(admin.target_dsn) == before


def test_types_without_binary_io_are_copied_as_text(admin, make_source, isolated) -> None:
    """isn's and seg's types have no binary send/receive: their tables (a column, a domain over
    an array of one, a composite holding one) are copied in text format and replicate exactly;
    the other tables stay binary."""
    if not shapes.available(admin.target_dsn, shapes.TEXT_ONLY_EXTENSIONS):
        pytest.skip("the target server has no isn or seg extension")
    source = make_source("textonly", shapes.TEXT_ONLY)
    iso = isolated({"PAGILA_SOURCE_DSN": source})
    pool = iso.pool(2, prefix="t")
    code, out = iso.submit_json("replicate")
    assert code == 0, (out, pool.log_tail())
    assert_replica(source, admin.target_dsn)
    assert scalar(admin.target_dsn, "SELECT count(DISTINCT code) FROM public.books") == 3
    with psycopg2.connect(source) as conn, conn.cursor() as cur:
        found = {t.name: t.text_only for t in catalog.tables(cur, ("public",))}
    assert found == {"books": True, "plain": False}


def test_rows_hidden_by_forced_row_security_fail_the_run(admin, make_source, isolated) -> None:
    """A policy that hides rows from the replicating user even as the table's owner: the run
    fails naming the table (as pg_dump does), never a partial copy verified against the same
    partial view; the target keeps what it had."""
    source = make_source("forced", shapes.FORCED_RLS)
    before = state_of(admin.target_dsn)
    iso = isolated({"PAGILA_SOURCE_DSN": source, "PAGILA_RETRY_DELAY": "0.2"})
    pool = iso.pool(1, prefix="f")
    code, out = iso.submit_json("replicate")
    assert code == 1, (out, pool.log_tail())
    assert out["state"] == "failed", out
    assert "row-level security" in out["error"] and "secret" in out["error"], out["error"]
    assert state_of(admin.target_dsn) == before
    assert run_schemas(admin.target_dsn) == []
