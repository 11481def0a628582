"""The target's schema, taken from the source itself with pg_dump, in two sections.

Pre-data (types, tables, functions, sequences) is restored into freshly reset target schemas
before any copy; post-data (indexes, constraints, triggers) after all of them, in parallel. The
dump is taken inside the run's snapshot, so schema and data agree.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import psycopg2.extensions
from psycopg2 import sql

from pagila_tasks import pgtools
from pagila_tasks.config import Settings

log = logging.getLogger(__name__)


def tools(s: Settings, source_version: int) -> tuple[Path, Path]:
    """pg_dump at least as new as the source, and the pg_restore beside it (same archive format)."""
    pg_dump = pgtools.find_tool("pg_dump", source_version // 10000, s.pg_dump)
    pg_restore = pg_dump.with_name("pg_restore")
    if not pg_restore.exists():
        pg_restore = pgtools.find_tool("pg_restore", source_version // 10000)
    return pg_dump, pg_restore


def dump(s: Settings, snapshot_id: str | None, source_version: int) -> bytes:
    """A custom-format, schema-only, owner- and privilege-free dump of the chosen schemas."""
    pg_dump, _ = tools(s, source_version)
    conninfo, env = pgtools.conninfo_and_env(s.source_dsn)
    with tempfile.TemporaryDirectory(prefix="pagila-dump-") as tmp:
        out = Path(tmp) / "schema.dump"
        args = [
            str(pg_dump),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "-Fc",
            "-f",
            str(out),
            "-d",
            conninfo,
        ]
        args += [f"--schema={name}" for name in s.schemas]
        if snapshot_id:
            args.append(f"--snapshot={snapshot_id}")
        pgtools.run(args, env, f"pg_dump ({pg_dump})", s.scrub)
        return out.read_bytes()


def reset_target(conn: psycopg2.extensions.connection, schemas: tuple[str, ...]) -> None:
    """Drop the chosen schemas on the target (pre-data creates them again)."""
    with conn.cursor() as cur:
        for name in schemas:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    conn.commit()


def without_foreign_keys(toc: str) -> str:
    """A ``pg_restore -l`` listing minus its foreign keys (see :mod:`pagila_tasks.fkeys`)."""
    kept = [
        line
        for line in toc.splitlines()
        if line.strip()
        and not line.startswith(";")
        and " FK CONSTRAINT " not in line.split(";", 1)[-1]
    ]
    return "\n".join(kept) + "\n"


def restore(
    s: Settings,
    archive: bytes,
    section: str,
    jobs: int,
    source_version: int,
    foreign_keys: bool = True,
) -> None:
    """Restore one section of a :func:`dump` archive into the target.

    Pre-data goes in one transaction (all or nothing); post-data runs ``jobs`` connections in
    parallel, which cannot share one transaction. ``foreign_keys=False`` leaves the section's
    foreign keys out (:mod:`pagila_tasks.fkeys` adds them).
    """
    _, pg_restore = tools(s, source_version)
    conninfo, env = pgtools.conninfo_and_env(s.target_dsn)
    if section == "post-data" and s.maintenance_work_mem:
        # Index builds and foreign-key checks size their sorts and hashes by this setting, which
        # any user may raise for their own session (the server's default is 64MB).
        options = env.get("PGOPTIONS", "")
        env["PGOPTIONS"] = f"{options} -c maintenance_work_mem={s.maintenance_work_mem}".strip()
    with tempfile.TemporaryDirectory(prefix="pagila-restore-") as tmp:
        path = Path(tmp) / "schema.dump"
        path.write_bytes(archive)
        args = [
            str(pg_restore),
            "--no-owner",
            "--no-privileges",
            f"--section={section}",
            "--exit-on-error",
            "-d",
            conninfo,
        ]
        what = f"pg_restore --section={section}"
        if not foreign_keys:
            toc = pgtools.run([str(pg_restore), "-l", str(path)], env, "pg_restore -l", s.scrub)
            listing = Path(tmp) / "entries.list"
            listing.write_text(without_foreign_keys(toc))
            args += ["-L", str(listing)]
            what += " (without foreign keys)"
        if section == "post-data":
            args += ["--clean", "--if-exists"]  # a redelivered callback can run it again
        if jobs > 1:
            args.append(f"--jobs={jobs}")
        else:
            args.append("--single-transaction")
        args.append(str(path))
        pgtools.run(args, env, what, s.scrub)
