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


def dump_schema(pg_dump: str, source: str, path: Path) -> None:
    """Custom-format, schema-only dump of ``public`` from the ``source`` conninfo."""
    subprocess.run(
        [pg_dump, "--schema-only", "-n", "public", *OPTIONS, "-Fc", "-f", str(path), "-d", source],
        check=True,
    )


def restore(pg_restore: str, target: str, path: Path, *options: str) -> None:
    """Restore ``path`` (with extra ``options``, e.g. a section) into the ``target`` conninfo."""
    subprocess.run(
        [pg_restore, *OPTIONS, *options, "--exit-on-error", "-d", target, str(path)], check=True
    )
