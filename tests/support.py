"""Helpers shared by the tests: running commands, reading databases, waiting for things."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import redis

from pagila_stack import procfs
from pagila_tasks.base import names
from pagila_tasks.pg import pgtools

ROOT = Path(__file__).resolve().parent.parent
SHARED_PAGILA = ROOT.parent / "shared" / "pagila"
WHEEL_SOURCES = ("pyproject.toml", "README.md", "celeryconfig.py", "pagila_tasks", "sql")
"""What the wheel is built from: workers/Dockerfile's builder stage copies exactly these."""


def let_servers_cross(path: Path, top: Path) -> None:
    """Under root, o+x on ``path`` and every folder above it up to ``top`` (pytest makes its
    temporary folders 0700): the suite's own choice, since the stack never widens a private
    folder for its server user and refuses instead."""
    if os.geteuid() != 0:
        return
    for folder in (path, *path.parents):
        folder.chmod(folder.stat().st_mode | 0o001)
        if folder == top:
            break


def submit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``pagila-submit`` as a user would (a subprocess), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pagila_tasks.cli.submit", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def submit_json(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, dict[str, Any]]:
    """``pagila-submit ... --json``: exit code and the parsed summary object."""
    proc = submit(*args, "--json", env=env, timeout=timeout)
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    except (ValueError, IndexError):
        raise AssertionError(f"not JSON: {proc.stdout!r} / {proc.stderr!r}") from None
    return proc.returncode, data


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one query on a fresh connection."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    """The single value of a query."""
    return query(dsn, sql, params)[0][0]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until ``predicate`` returns something truthy, or fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def redis_client() -> redis.Redis:
    """A client on the test Redis database."""
    return redis.Redis.from_url(os.environ["PAGILA_REDIS_URL"])


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (from /proc)."""
    return procfs.children(pid)


def proc_environ(pid: int) -> dict[str, str]:
    """``pid``'s environment from /proc/<pid>/environ; empty when gone or not ours to read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in KiB."""
    kib = procfs.peak_rss_kib(pid)
    if kib is None:
        raise AssertionError(f"no VmHWM for pid {pid} (gone, or a kernel thread)")
    return kib


CLAIM_KEY = "pagila-test:claimed"


def free_redis_url(url: str) -> str:
    """``url`` moved to the first empty database above 0, claimed with a key (as rq's tests do).

    Tests that start workers of their own get a database nobody else uses, so their queues,
    locks and run records never meet the session workers' (database 0).
    """
    for db in range(1, 64):
        candidate = re.sub(r"/\d+$", f"/{db}", url)
        client = redis.Redis.from_url(candidate)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, "1", nx=True):
                return candidate
        except redis.ResponseError:  # past the server's last database
            break
        finally:
            client.close()
    raise AssertionError(f"no empty Redis database on {url.rsplit('@', 1)[-1]}")


# -- comparing a source with its replica -----------------------------------------------------

PINNED = "?options=" + quote(
    "-c TimeZone=UTC -c IntervalStyle=postgres -c bytea_output=hex -c lc_monetary=C "
    "-c extra_float_digits=3"
)
"""Appended to a DSN: the text form of values no longer depends on the database's defaults."""

CHECKSUM = (
    "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text "
    "FROM ONLY {} AS t"
)


def tables(dsn: str, schemas: tuple[str, ...] = ("public",)) -> list[str]:
    """Quoted names of the ordinary tables (and leaf partitions) in ``schemas``."""
    rows = query(
        dsn,
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN "
        "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND "
        "n.nspname = ANY(%s) ORDER BY 1",
        (list(schemas),),
    )
    return [r[0] for r in rows]


def checksums(dsn: str, names: list[str]) -> dict[str, tuple]:
    """Per table, its row count and a content checksum computed here, not by the package."""
    out = {}
    for name in names:
        conn_rows = query(dsn + PINNED, CHECKSUM.format(name))
        out[name] = conn_rows[0]
    return out


def table_fingerprints(dsn: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, tuple]:
    """Per table (leaf partitions included), its row count and the md5 of its rows in order.

    Exact where :func:`checksums` sums hashes: for "unchanged" assertions on one database.
    """
    out = {}
    for name in tables(dsn, schemas):
        out[name] = query(
            dsn + PINNED,
            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
            f"FROM ONLY {name} AS t",
        )[0]
    return out


def sequences(dsn: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, tuple]:
    """Per sequence, its ``last_value`` and ``is_called``."""
    names = query(
        dsn,
        "SELECT format('%%I.%%I', schemaname, sequencename) FROM pg_sequences "
        "WHERE schemaname = ANY(%s)",
        (list(schemas),),
    )
    return {n: query(dsn, f"SELECT last_value, is_called FROM {n}")[0] for (n,) in names}


def schema_ddl(dsn: str, schemas: tuple[str, ...] = ("public",)) -> str:
    """``pg_dump --schema-only`` of ``schemas``, without the per-run ``\\restrict`` lines."""
    version = scalar(dsn, "SHOW server_version_num")
    pg_dump = pgtools.find_tool("pg_dump", int(version) // 10000)
    conninfo, env = pgtools.conninfo_and_env(dsn)
    args = [str(pg_dump), "--schema-only", "--no-owner", "--no-privileges", "-d", conninfo]
    args += [f"--schema={names.dump_pattern(s)}" for s in schemas]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return "\n".join(
        ln for ln in out.splitlines() if not ln.startswith(("\\restrict", "\\unrestrict"))
    )


def matviews(dsn: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, tuple]:
    """Per materialized view, whether it is populated, and its rows' count and checksum."""
    found = query(
        dsn,
        "SELECT format('%%I.%%I', schemaname, matviewname), ispopulated FROM pg_matviews "
        "WHERE schemaname = ANY(%s) ORDER BY 1",
        (list(schemas),),
    )
    return {
        name: (populated, *(query(dsn + PINNED, CHECKSUM.replace("ONLY ", "").format(name))[0]))
        if populated
        else (populated,)
        for name, populated in found
    }


def large_objects(dsn: str) -> list[tuple]:
    """Every large object of the database: oid and the md5 of its content."""
    return query(
        dsn,
        "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
    )


def state_of(dsn: str, schemas: tuple[str, ...] = ("public",)) -> dict[str, Any]:
    """Everything a run could change in ``schemas``: DDL, every table's count and md5,
    sequences, materialized views and the database's large objects."""
    return {
        "ddl": schema_ddl(dsn, schemas),
        "tables": table_fingerprints(dsn, schemas),
        "sequences": sequences(dsn, schemas),
        "matviews": matviews(dsn, schemas),
        "large_objects": large_objects(dsn),
    }


def run_schemas(dsn: str) -> list[str]:
    """Schemas replication runs create on a target (staging or previous copies)."""
    rows = query(
        dsn,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pagila\\_stage\\_%%' "
        "OR nspname LIKE 'pagila\\_old\\_%%' OR nspname LIKE 'pagila\\_aside\\_%%' ORDER BY 1",
    )
    return [r[0] for r in rows]


def assert_replica(src: str, tgt: str, schemas: tuple[str, ...] = ("public",)) -> None:
    """The target holds the source's tables, rows, sequences, populated materialized views,
    large objects and DDL, exactly."""
    found = tables(src, schemas)
    assert found == tables(tgt, schemas)
    assert checksums(src, found) == checksums(tgt, found)
    assert sequences(src, schemas) == sequences(tgt, schemas)
    assert matviews(src, schemas) == matviews(tgt, schemas)
    assert large_objects(src) == large_objects(tgt)
    assert schema_ddl(src, schemas) == schema_ddl(tgt, schemas)


# -- the package as an interpreter sees it -----------------------------------------------------

# Where the package, celeryconfig and the SQL come from, as the interpreter running it sees them.
PROBE = (
    "import json, sys; import pagila_tasks, pagila_tasks.pg.sqlfiles as s; "
    "cc = __import__('celeryconfig') if 'cc' in sys.argv else None; "
    "print(json.dumps({'package': pagila_tasks.__file__, 'sql': str(s.folder()), "
    "'celeryconfig': cc and cc.__file__, 'query': s.query('catalog_tables')}))"
)


def completed(
    args: list[str | Path], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (at most 10 minutes), its output captured as text."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or a failure showing its output."""
    proc = completed(args, cwd, env)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def probe(python: Path | str, cwd: Path, env: dict[str, str], *flags: str) -> dict[str, str]:
    """The PROBE's answer from ``python`` started in ``cwd``."""
    return json.loads(run([python, *flags, "-c", PROBE, "cc"], cwd, env).strip().splitlines()[-1])
