"""Progress of a long import on stderr: items and bytes, rate, time left.

A line at most every ``every`` seconds and one at the end, so a log of a long run stays short.
Time is a parameter (``clock``): tests need no sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

MB = 1_000_000


@dataclass(slots=True, kw_only=True)
class Counts:
    """What an import did so far. ``items`` counts every item read, ``bytes`` their size."""

    items: int = 0
    bytes: int = 0
    position: int = 0  # bytes of the source read
    archived: int = 0  # new entries in the vault
    already: int = 0  # archived before (an earlier run, or the same bytes from another import)
    too_large: int = 0  # over the size bound: not archived


def _eta(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def line(c: Counts, *, total: int | None, elapsed: float) -> str:
    """One progress line: ``1,234 items (56 archived, 7 already), 12.3 of 40.0 MB (31%) ...``."""
    rate = c.items / elapsed if elapsed > 0 else 0.0
    mbps = c.position / MB / elapsed if elapsed > 0 else 0.0
    done = f"{c.position / MB:.1f}"
    size = f"{done} of {total / MB:.1f} MB ({100 * c.position // total}%)" if total else ""
    size = size or f"{done} MB"
    text = f"import: {c.items:,} items ({c.archived:,} archived, {c.already:,} already"
    text += f", {c.too_large:,} too large)" if c.too_large else ")"
    text += f", {size}, {rate:,.0f} items/s, {mbps:.1f} MB/s"
    if total and mbps > 0 and c.position < total:
        text += f", about {_eta((total - c.position) / MB / mbps)} left"
    return text


class Progress:
    """Prints ``line`` to ``out`` (None: nowhere) at most every ``every`` seconds."""

    def __init__(
        self,
        out: TextIO | None,
        *,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.every = every
        self.clock = clock
        self.start = clock()
        self.last = self.start

    def elapsed(self) -> float:
        return self.clock() - self.start

    def show(self, counts: Counts, *, total: int | None, final: bool = False) -> None:
        now = self.clock()
        if self.out is None or (not final and now - self.last < self.every):
            return
        self.last = now
        print(line(counts, total=total, elapsed=now - self.start), file=self.out, flush=True)
