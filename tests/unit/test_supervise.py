"""A failing source is contained: logged without its message, restarted with backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest

from guardmail.core.backoff import Backoff
from guardmail.daemon.supervise import describe, keep_running


class Flaky:
    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        await asyncio.Event().wait()  # runs forever once it stops failing


def test_a_failing_source_is_restarted_with_backoff_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Flaky([RuntimeError("boom"), OSError("disk"), None])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        task = asyncio.create_task(
            keep_running(
                "inbox",
                source.run,
                backoff=Backoff(base=1.0, cap=8.0),
                clock=lambda: 0.0,
                sleep=sleep,
                rand=lambda: 1.0,
            )
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="guardmail"):
        asyncio.run(main())
    assert source.runs == 3
    assert slept == [1.0, 2.0]
    failed = [r for r in caplog.records if r.getMessage().startswith("source.failed")]
    assert len(failed) == 2 and all(r.levelno == logging.ERROR for r in failed)


def test_the_log_carries_no_exception_message(caplog: pytest.LogCaptureFixture) -> None:
    secret = "pässwörd-Ω"
    try:
        secret.encode("ascii")
    except UnicodeEncodeError as exc:
        error = exc
    text = describe(error)
    assert text.startswith("UnicodeEncodeError at ")
    assert "ä" not in text and "Ω" not in text and "position" not in text

    source = Flaky([error, None])

    async def no_sleep(seconds: float) -> None:
        return None

    async def main() -> None:
        task = asyncio.create_task(keep_running("imap", source.run, sleep=no_sleep))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.DEBUG, logger="guardmail"):
        asyncio.run(main())
    assert source.runs == 2
    logged = "\n".join(r.getMessage() + str(getattr(r, "gm_fields", "")) for r in caplog.records)
    assert "UnicodeEncodeError" in logged
    assert "ä" not in logged and "Ω" not in logged


def test_a_source_that_returns_is_restarted_too() -> None:
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1
        if runs > 2:
            await asyncio.Event().wait()

    async def no_sleep(seconds: float) -> None:
        return None

    async def main() -> None:
        task = asyncio.create_task(keep_running("smtp_filter", returns, sleep=no_sleep))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert runs == 3
