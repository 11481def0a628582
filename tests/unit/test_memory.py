"""A worker's large blocks go back to the system when freed (``base.memory``): without the fix,
glibc serves blocks below the size of the largest freed one from its heap and keeps them."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")

PROBE = """
import sys
from pagila_tasks.base import memory
if sys.argv[1] == "fixed":
    assert memory.return_large_blocks()
def rss():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS"))
    return int(line.split()[1])
big = b"x" * (16 << 20)  # one spool's worth, freed: glibc raises its threshold to its size
del big
base = rss()
blocks = [b"y" * (4 << 20) for _ in range(6)]  # the next unit's chunks, 24 MiB, then freed
del blocks
print(rss() - base)
"""


def _kept_kib(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_freed_blocks_are_returned_with_the_threshold_fixed() -> None:
    kept, fixed = _kept_kib("default"), _kept_kib("fixed")
    assert kept >= 16 * 1024, f"glibc kept only {kept} KiB: the probe no longer shows the growth"
    assert fixed < 2 * 1024, f"{fixed} KiB stayed resident after the blocks were freed"
