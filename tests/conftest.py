"""Shared test helpers, and the skip policy.

With ``CI=true`` a skipped test fails the run unless ``tests/allowed-skips.txt`` lists it (a node
id prefix and the reason): a skip that hides a broken capability must be seen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ALLOWED_SKIPS = Path(__file__).parent / "allowed-skips.txt"


def wait_for(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds (bounded); fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def allowed_skips(text: str) -> list[str]:
    """Node id prefixes of ``allowed-skips.txt``; a line without a reason is refused."""
    prefixes: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prefix, sep, reason = line.partition("--")
        if not sep or not prefix.strip() or not reason.strip():
            raise ValueError(f"{ALLOWED_SKIPS}:{number}: write 'NODE-ID -- reason'")
        prefixes.append(prefix.strip())
    return prefixes


def unexpected_skips(skipped: list[str], prefixes: list[str]) -> list[str]:
    return [nodeid for nodeid in skipped if not any(nodeid.startswith(p) for p in prefixes)]


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() not in {"true", "1"}:
        return
    bad = unexpected_skips(_skipped, allowed_skips(ALLOWED_SKIPS.read_text(encoding="utf-8")))
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI: {len(bad)} skipped test(s) not in tests/allowed-skips.txt:", red=True
            )
            for nodeid in bad:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_sessionstart(session: pytest.Session) -> None:
    # The confusables table is imported at the first non-ASCII text folded (issue 27): here,
    # not inside whichever hypothesis example folds one first, where its import (a few hundred
    # ms on a busy machine) exceeds the example's deadline. The tests of its laziness run in
    # fresh interpreters (tests/unit/test_confusables_lazy.py).
    from guardmail.core.confusables import fold

    fold("\u0430")
