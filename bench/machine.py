"""Facts about the machine, the servers and the tools, printed with every result.

Why: numbers from a 2-core laptop and a 32-core server differ; the report says which it was.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from psycopg2 import sql

from bench.stack import BenchStack

SHOWN_SETTINGS = (
    "shared_buffers",
    "maintenance_work_mem",
    "work_mem",
    "max_wal_size",
    "wal_level",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "max_parallel_maintenance_workers",
)
"""Server settings in force that move the numbers, read back from the source."""


def _cpu() -> str:
    """The CPU's model name from ``/proc/cpuinfo``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def _memory_bytes() -> int:
    """Total RAM from ``/proc/meminfo`` (0 when unreadable)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return 0


def _pgcopydb_version() -> str:
    """pgcopydb's version, ``-`` when it is not installed."""
    exe = shutil.which("pgcopydb")
    if not exe:
        return "-"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"pgcopydb version (\S+)", out)
    return found.group(1) if found else "?"


def facts(b: BenchStack) -> dict[str, Any]:
    """Cores, CPU, RAM, kernel, Python, server version and settings, tool versions."""
    with b.cursor("source") as cur:
        cur.execute("SELECT version()")
        version = cur.fetchone()[0]
        settings = {}
        for name in SHOWN_SETTINGS:
            cur.execute(sql.SQL("SHOW {}").format(sql.Identifier(name)))
            settings[name] = cur.fetchone()[0]
    tool = subprocess.run([b.tools["pg_dump"], "--version"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu(),
        "memory_gb": round(_memory_bytes() / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": version.split(" on ")[0],
        "pg_dump": tool.strip(),
        "pgcopydb": _pgcopydb_version(),
        "servers": b.stack.status().get("servers"),
        "settings": settings,
    }
