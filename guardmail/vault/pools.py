"""Thread pools made at their first use: a module that may never need its threads (a daemon
whose groups are all small, a vault never written) starts none."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def lazy_pool(size: int, name: str) -> Callable[[], ThreadPoolExecutor]:
    """A function returning one ``ThreadPoolExecutor`` of ``size`` threads named ``name-N``,
    made at its first call (under a lock: two first callers get the same pool)."""
    lock = threading.Lock()
    made: list[ThreadPoolExecutor] = []

    def pool() -> ThreadPoolExecutor:
        with lock:
            if not made:
                made.append(ThreadPoolExecutor(max_workers=size, thread_name_prefix=name))
            return made[0]

    return pool
