"""A group of many new blobs made durable by syncfs(2) (guardmail.vault.blobs): same result as the
per-file fsyncs, and a syncfs error fails the whole group, journaled and acted on nothing."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.core.item import Channel, Identity, Item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import blobs as blobs_module
from guardmail.vault import group as group_module
from guardmail.vault.group import committer
from guardmail.vault.store import Archive, Vault
from guardmail.vault.verify import verify_vault
from tests.unit.test_vault_group import held

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MANY = blobs_module.SYNCFS_MIN + 8

pytestmark = pytest.mark.skipif(blobs_module._SYNCFS is None, reason="no syncfs in this libc")


@pytest.fixture(autouse=True)
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # The syncfs path is exercised in this process, where it can be made to fail: groups do
    # not go to the blob writer child (its own failures: test_vault_blobwriter.py).
    monkeypatch.setattr(group_module, "WRITER_MIN", 10**9)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield Vault(tmp_path / "vault", storage, "alice")
    storage.close()


def archives(n: int) -> list[Archive]:
    return [Archive(raw=b"stanza %d\r\n" % k, source_ref=f"test:{k}") for k in range(n)]


def counting(monkeypatch: pytest.MonkeyPatch, fail_at: int = 0) -> list[int]:
    """Count syncfs calls; the ``fail_at``-th (1-based) raises EIO as a failed writeback would."""
    calls: list[int] = []
    real = blobs_module.syncfs

    def syncfs(fd: int) -> None:
        calls.append(fd)
        if len(calls) == fail_at:
            raise OSError(errno.EIO, "syncfs: Input/output error")
        real(fd)

    monkeypatch.setattr(blobs_module, "syncfs", syncfs)
    return calls


def test_many_new_blobs_take_two_syncfs_and_no_file_fsync(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting(monkeypatch)
    fsyncs: list[int] = []
    monkeypatch.setattr(blobs_module, "fsync_all", lambda fds: fsyncs.extend(fds))
    receipts = vault.put_many(archives(MANY), now=NOW)
    assert len(calls) == 2 and fsyncs == []
    assert [r.seq for r in receipts] == list(range(1, MANY + 1))
    assert verify_vault(vault) == []


def test_few_new_blobs_are_fsynced_one_by_one(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting(monkeypatch)
    vault.put_many(archives(blobs_module.SYNCFS_MIN - 1), now=NOW)
    assert calls == []
    assert verify_vault(vault) == []


class Acts:
    def __init__(self) -> None:
        self.acted: list[str] = []

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        self.acted.extend(i.source_ref for i in items)
        return ["dropped"] * len(items)


def item(n: int) -> Item:
    return Item(
        raw=b"<message from='ex@evil.example/r' id='%d'><body>hi</body></message>" % n,
        channel=Channel.XMPP,
        tenant="alice",
        account="alice",
        source_ref=f"xmpp:alice:{n}",
        received_at=NOW,
        identities=(Identity(source="jid", address="ex@evil.example"),),
    )


@pytest.mark.parametrize("fail_at", [1, 2])  # before the renames, after them
def test_a_syncfs_error_fails_every_request_of_the_group_and_nothing_is_acted_on(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    # The first commit (one blob: fsync'd) is held so that both pipeline requests queue
    # behind it and share the next group, whose syncfs fails.
    release = held(vault, monkeypatch)
    calls = counting(monkeypatch, fail_at=fail_at)
    rules = RuleSet([OffenderRule(name="ex", patterns=("ex@evil.example",), action=Action.BLOCK)])
    pipeline = Pipeline(vault=vault, rules=rules, clock=lambda: NOW)
    actor = Acts()
    half = MANY // 2

    async def run() -> list[Any]:
        before = committer(vault).submit(archives(1), now=NOW)
        waiters = [
            pipeline.submit_many([item(n) for n in range(half)], actor),
            pipeline.submit_many([item(n) for n in range(half, MANY)], actor),
        ]
        release.set()
        await asyncio.wrap_future(before)
        return await asyncio.gather(*waiters, return_exceptions=True)

    results = asyncio.run(run())
    assert len(calls) == fail_at
    assert all(isinstance(r, VaultUnavailable) for r in results), results
    assert all("Input/output error" in str(r) for r in results)
    assert actor.acted == []
    assert [r.source_ref for r in vault.rows()] == ["test:0"]
    assert not [p for p in vault.blobs.root.rglob("*") if p.name.endswith(".tmp")]
    # Once the vault works again, the retry archives each item once and then acts on it.
    again = asyncio.run(pipeline.process_many([item(n) for n in range(MANY)], actor))
    assert all(o.receipt is not None and not o.receipt.duplicate for o in again)
    assert sorted(actor.acted) == sorted(f"xmpp:alice:{n}" for n in range(MANY))
    archived = [r.source_ref for r in vault.rows() if r.kind == "archived"]
    assert archived == ["test:0", *(f"xmpp:alice:{n}" for n in range(MANY))]
    assert verify_vault(vault) == []
