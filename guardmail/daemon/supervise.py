"""One source kept running: a source that fails is logged, shown and restarted with backoff,
while every other source, tenant and the control socket run on.

Contracts:
- ``keep_running(name, run)`` awaits ``run()`` again and again until cancelled. A source's
  ``run`` is meant to run forever, so a return is a failure as much as an exception is.
- Cancellation (daemon shutdown) and BaseExceptions that are not Exceptions pass through.
- Each failure logs ``source.failed`` (error level, so status and metrics count it) with the
  exception's class and the innermost frame of guardmail's own code, never its message or
  arguments: those may carry a message's text or a secret (a password's character in a
  UnicodeEncodeError). The full traceback goes to the debug log, also without the message.
- The delay before a restart follows ``core.backoff.NETWORK``; a run that lasted
  ``STABLE_SECONDS`` or more starts the backoff afresh.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from guardmail.core.backoff import NETWORK, Backoff
from guardmail.logs import event

STABLE_SECONDS = 60.0
_PACKAGE = str(Path(__file__).resolve().parent.parent)


def where(exc: BaseException) -> str:
    """``module.py:LINE in function`` of the innermost guardmail frame of ``exc``'s traceback
    (the innermost frame of all if none is guardmail's)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(_PACKAGE)]
    if not (ours or frames):
        return "unknown"
    frame = (ours or frames)[-1]
    name = Path(frame.filename)
    shown = name.relative_to(_PACKAGE).as_posix() if ours else name.name
    return f"{shown}:{frame.lineno} in {frame.name}"


def describe(exc: BaseException) -> str:
    """The failure without its message: class and place."""
    return f"{type(exc).__name__} at {where(exc)}"


async def keep_running(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff = NETWORK,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> None:
    failures = 0
    while True:
        started = clock()
        try:
            await run()
            error = "the source stopped by itself"
        except Exception as exc:  # contained per source: see the module contract
            error = describe(exc)
            logging.getLogger("guardmail").debug(
                "source.traceback %s",
                "".join(traceback.format_tb(exc.__traceback__)),
            )
        if clock() - started >= STABLE_SECONDS:
            failures = 0
        delay = backoff.delay(failures, rand=rand())
        failures += 1
        event(
            "source.failed",
            level=logging.ERROR,
            account=name,
            error=error,
            failures=failures,
            retry_in=round(delay, 1),
        )
        await sleep(delay)
