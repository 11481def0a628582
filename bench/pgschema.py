"""Schema dump and restore shared by the bench's plain-script methods (Airflow design, floor).

Conninfo strings carry no password (the bench hands one to libpq through a private PGPASSFILE).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pagila_tasks.pg.pgtools import conninfo_and_env

OPTIONS = ("--no-owner", "--no-privileges")


def conninfo(dsn: str) -> str:
    """``dsn`` as a libpq conninfo string without its password."""
    return conninfo_and_env(dsn)[0]


def dump_schema(pg_dump: str, source: str, path: Path, views: bool = True) -> None:
    """Custom-format dump of ``public``'s schema from the ``source`` conninfo: its pre-data and
    post-data sections, without the data section. With ``views`` it keeps, unlike
    ``--schema-only``, the post-data refresh of each populated materialized view, so the floor
    builds the same database as the other methods (ours refreshes them, and a whole dump's
    restore does); without, it is ``--schema-only`` (the Airflow design refreshes at its end)."""
    what = ("--section=pre-data", "--section=post-data") if views else ("--schema-only",)
    subprocess.run(
        [pg_dump, *what, "-n", "public", *OPTIONS, "-Fc", "-f", str(path), "-d", source],
        check=True,
    )


POPULATED_VIEWS = """
SELECT n.nspname, c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'm' AND c.relispopulated ORDER BY 1
"""
"""The materialized views of ``public`` the source has populated: schema, name."""


def restore(pg_restore: str, target: str, path: Path, *options: str) -> None:
    """Restore ``path`` (with extra ``options``, e.g. a section) into the ``target`` conninfo."""
    subprocess.run(
        [pg_restore, *OPTIONS, *options, "--exit-on-error", "-d", target, str(path)], check=True
    )
