"""A one-line progress display for long exports: ``copying items 1200/20000 (6%)``.

Redrawn in place with a carriage return, at most every ``interval`` seconds and on each stage's
last step; a new stage starts a new line. Time is a parameter (``clock``), so tests need no sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._stage = ""
        self._last = float("-inf")

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        if stage != self._stage:
            if self._stage:
                self._stream.write("\n")
            self._stage = stage
        elif done < total and now - self._last < self._interval:
            return
        self._last = now
        pct = 100 * done // total if total else 100
        self._stream.write(f"\r{stage} {done}/{total} ({pct}%)")
        self._stream.flush()

    def close(self) -> None:
        if self._stage:
            self._stream.write("\n")
            self._stream.flush()
            self._stage = ""
