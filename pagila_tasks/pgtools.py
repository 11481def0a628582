"""Finding and running PostgreSQL client programs (pg_dump, pg_restore) without leaking secrets.

A password never goes on a command line (where ``ps`` shows it): the conninfo passed to the
program has none, and the password travels in ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from psycopg2.extensions import make_dsn, parse_dsn

from pagila_tasks.errors import ReplicationError
from pagila_tasks.stack.binaries import tool_candidates, tool_version


def find_tool(name: str, min_major: int, override: str | None = None) -> Path:
    """The oldest ``name`` at least ``min_major`` (closest to the server), or a clear error."""
    if override:
        path = Path(override)
        if name != "pg_dump":
            path = path.with_name(name)
        found = tool_version(str(path))
        if found is None:
            raise ReplicationError(f"PAGILA_PG_DUMP: {path} does not run")
        if found[0] < min_major:
            raise ReplicationError(f"{path} is version {found[0]}; the server needs {min_major}+")
        return path
    versions = {p: tool_version(str(p)) for p in tool_candidates(name)}
    usable = sorted((v, str(p)) for p, v in versions.items() if v and v[0] >= min_major)
    if not usable:
        seen = ", ".join(f"{p} ({v[0] if v else '?'})" for p, v in versions.items()) or "none"
        raise ReplicationError(
            f"no {name} of version {min_major} or newer found (seen: {seen}); install the "
            f"PostgreSQL {min_major} client tools or set PAGILA_PG_DUMP"
        )
    return Path(usable[0][1])


def conninfo_and_env(dsn: str) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and an environment carrying it."""
    params = parse_dsn(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return make_dsn(**params), env


def run(args: list[str], env: dict[str, str], what: str, scrub: Callable[[str], str]) -> str:
    """Run a client program; a failure raises with its (scrubbed) stderr."""
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ReplicationError(f"{what} failed: {scrub(proc.stderr.strip()[-2000:])}")
    return proc.stdout
