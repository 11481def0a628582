"""Large blocks handed back to the system when freed, in a worker process.

glibc's malloc serves a block of 128 KiB or more with an mmap of its own, but after such a
block is freed it raises that threshold to the block's size (up to 32 MiB, and the heap's trim
threshold to twice that), so later spools and row chunks come from the heap and the threads'
arenas, where freed memory stays resident. A worker's memory then grew with the units it had
copied: at Pagila x200 its peak (VmHWM) was 155-166 MB and 128-153 MB stayed resident after
the run, against 120-139 MB and 70 MB with the threshold fixed (docs/benchmarks.md, levers
table). Fixing it (``mallopt``) turns the adjustment off. Other C libraries are left as they
are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""
LARGE = 128 * 1024
"""glibc's own default threshold, kept fixed."""


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold in this process (and the children it forks); whether it was
    set (False elsewhere than glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE))
    except (OSError, AttributeError):
        return False
