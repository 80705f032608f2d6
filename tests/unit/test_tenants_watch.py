"""The tenants.d watcher: a change made after its start is applied; a directory untouched since
the first load is not read a second time when the watching begins (counted in loads)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guardmail import logs
from guardmail.config import tenants as tenant_files
from guardmail.daemon import tenants as tenants_module
from guardmail.daemon.reload import COARSE_CLOCK_NS
from guardmail.daemon.tenants import TenantDirectory

ALICE = """\
name: alice
recipients: [alice@example.org]
offenders:
  - name: Ex
    addresses: [ex@example.net]
"""
BOB = "name: bob\nrecipients: [bob@example.org]\noffenders:\n  - {name: O, domains: [x.example]}\n"
# The files a test wrote look this much older to the directory than they are (no sleeping).
AGED_NS = 10_000_000_000


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every read of a tenants directory, as it happens."""
    seen: list[Path] = []

    def counted(directory: Path, **kwargs: Any) -> tenant_files.LoadedTenants:
        seen.append(directory)
        return tenant_files.load_tenants(directory, **kwargs)

    monkeypatch.setattr(tenants_module, "load_tenants", counted)
    return seen


def watching(tenants: TenantDirectory, done: Callable[[], bool]) -> list[str]:
    """Run ``tenants.watch()`` until ``done()`` holds (bounded); the events logged meanwhile.

    ``done`` is first asked once the watcher says it is watching."""
    names: list[str] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        names.append(name)

    async def main() -> None:
        task = asyncio.create_task(tenants.watch())
        try:
            for _ in range(200):  # bounded: the debounce is 0.3 s
                await asyncio.sleep(0.05)
                if "tenants.watching" in names and done():
                    return
            raise AssertionError(f"the watcher never got there; events: {names}")
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    logs.add_listener(listen)
    try:
        asyncio.run(main())
    finally:
        logs.remove_listener(listen)
    return names


def test_an_untouched_directory_is_read_once_and_a_file_added_after_the_start_is_applied(
    tmp_path: Path, loads: list[Path]
) -> None:
    d = tmp_path / "tenants.d"
    d.mkdir()
    (d / "a.yaml").write_text(ALICE)
    tenants = TenantDirectory(
        directory=d, state_dir=tmp_path / "var", clock=lambda: time.time_ns() + AGED_NS
    )
    try:
        assert len(loads) == 1
        added = False

        def bob_routed() -> bool:
            nonlocal added
            if not added:  # the watcher runs: a file written now raises an event
                (d / "b.yaml").write_text(BOB)
                added = True
            return tenants.route("bob@example.org") is not None

        events = watching(tenants, bob_routed)
        assert len(loads) == 2  # the start, then b.yaml: no look at start-up in between
        assert events.count("tenants.reloaded") == 1
        assert tenants.names == ["alice", "bob"]
    finally:
        tenants.close()


def keep_old_mtime(path: Path) -> None:
    old = time.time_ns() - 3_600_000_000_000
    os.utime(path, ns=(old, old))


def copy_keeping_mtime(d: Path) -> None:
    """What ``cp -p`` does to a.yaml: new content, the old modification time."""
    (d / "a.yaml").write_text(ALICE.replace("alice@", "alicia@"))
    keep_old_mtime(d / "a.yaml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: (d / "a.yaml").write_text(ALICE.replace("alice@", "alicia@")), ["alice"]),
        (lambda d: (d / "b.yaml").write_text(BOB), ["alice", "bob"]),
        (lambda d: (d / "a.yaml").unlink(), []),
        (copy_keeping_mtime, ["alice"]),
    ],
    ids=["edited", "added", "removed", "copied-with-old-mtime"],
)
def test_a_change_made_between_the_first_load_and_the_watching_is_applied_at_its_start(
    tmp_path: Path, loads: list[Path], change: Callable[[Path], object], expected: list[str]
) -> None:
    d = tmp_path / "tenants.d"
    d.mkdir()
    (d / "a.yaml").write_text(ALICE)
    keep_old_mtime(d / "a.yaml")
    # Change times cannot be set back: let the setup's age past the coarse-clock margin, so that
    # only the change below (made after the load) is new. A wait, not a measurement.
    time.sleep(2 * COARSE_CLOCK_NS / 1e9)
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        change(d)  # no observer runs yet: no event will tell of it
        events = watching(tenants, lambda: True)
        assert len(loads) == 2
        assert tenants.names == expected
        assert events.count("tenants.reloaded") == 1
        if expected == ["alice"]:
            assert tenants.route("alicia@example.org") is not None
            assert tenants.route("alice@example.org") is None
    finally:
        tenants.close()
