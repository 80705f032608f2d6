"""Process-wide memory settings of ``guardmail run``, made once at its start.

glibc's malloc gives each thread that allocates its own arena, up to eight a core, and an
arena keeps what was freed in it for its thread: the vault's group commit, the receipt
workers, asyncio's executor threads and watchdog's all allocate (a message's bytes, SQLite's
pages are malloc'd, not Python's small-object allocator's). ``limit_arenas`` caps them at
``ARENAS`` before any of those threads starts; an operator's ``MALLOC_ARENA_MAX`` stands.
Threads then share arenas under glibc's locks: the daemon's threads mostly wait on fsync and
DNS, not on malloc (bench/README.md, issue 27, has the figures).

Not done here: a smaller ``threading.stack_size``. A stack's untouched pages are not resident,
so it would save little, and a thread that validates a deeply nested file (a reload parses
tenants.d in asyncio's executor) could overflow it and crash the process.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; False if not done (the environment sets it, or
    the C library has no such knob, as musl)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
