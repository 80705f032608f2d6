"""A group of several tenants' vaults (guardmail.vault.group_parts): large parts through the
blob writer child, and the failures that are everybody's (the storage, the commit) against
those that are one tenant's (its blobs, its HEAD)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.errors import StateError, VaultUnavailable
from guardmail.storage.base import StorageUnavailable
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.group import WRITER_MIN, GroupCommitter, SharedCommitter
from guardmail.vault.store import Receipt, Vault
from guardmail.vault.verify import verify_vault
from tests.unit.test_vault_group_tenants import archive, held

NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield storage
    storage.close()


def failing_transaction(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch, nth: int, exc: Exception, *, at: str
) -> None:
    """The ``nth`` write transaction of ``storage`` fails with ``exc``: as it begins
    (``at="begin"``) or at its end, after the caller's work (``at="commit"``)."""
    transaction = storage.transaction
    count = [0]

    @contextmanager
    def patched() -> Iterator[Any]:
        count[0] += 1
        if count[0] == nth and at == "begin":
            raise exc
        with transaction() as tx:
            yield tx
            if count[0] == nth:
                raise exc  # inside: the real transaction rolls back

    monkeypatch.setattr(storage, "transaction", patched)


def test_large_parts_go_through_the_writer_child_and_a_broken_one_fails_alone(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = (Vault(tmp_path / "v" / n, storage, n) for n in ("alice", "bob", "carol"))
    shared = SharedCommitter("test")
    a, b, c = (GroupCommitter(v, shared) for v in (alice, bob, carol))
    carol.root.mkdir(parents=True)
    (carol.root / "blobs").write_bytes(b"a file where carol's blob directory should be")
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    many = a.submit([archive("alice", n) for n in range(1, WRITER_MIN + 1)], now=NOW)
    broken = c.submit([archive("carol", n) for n in range(WRITER_MIN)], now=NOW)
    small = b.submit([archive("bob", 0)], now=NOW)
    release.set()
    first.result(10)
    assert [r.seq for r in many.result(20)] == list(range(2, WRITER_MIN + 2))
    assert small.result(10)[0].seq == 1
    with pytest.raises(VaultUnavailable, match=f"vault {carol.root} cannot archive"):
        broken.result(10)
    assert carol.rows() == []
    assert verify_vault(alice) == [] and verify_vault(bob) == []


@pytest.mark.parametrize(
    ("exc", "at"),
    [
        (StorageUnavailable("database is locked"), "begin"),
        (StateError("the database is damaged (disk I/O error)"), "commit"),
    ],
)
def test_a_failure_of_the_shared_transaction_fails_every_tenant_and_their_retries_succeed(
    tmp_path: Path,
    storage: SQLiteStorage,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
    at: str,
) -> None:
    alice, bob = (Vault(tmp_path / "v" / n, storage, n) for n in ("alice", "bob"))
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    failing_transaction(storage, monkeypatch, 2, exc, at=at)  # 1: alice's held group
    mixed = [a.submit([archive("alice", 1)], now=NOW), b.submit([archive("bob", 1)], now=NOW)]
    release.set()
    assert first.result(10)[0].seq == 1
    for future in mixed:
        with pytest.raises(VaultUnavailable):
            future.result(10)
    assert [r.seq for r in alice.rows()] == [1] and bob.rows() == []
    # The sources retry: their blobs are in place, and each is journaled once.
    assert a.submit([archive("alice", 1)], now=NOW).result(10)[0].seq == 2
    assert b.submit([archive("bob", 1)], now=NOW).result(10)[0].seq == 1
    assert verify_vault(alice) == [] and verify_vault(bob) == []


def test_a_tenant_whose_head_cannot_be_written_hears_it_and_the_others_are_answered(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = (Vault(tmp_path / "v" / n, storage, n) for n in ("alice", "bob"))
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)

    def no_head(row: Any) -> None:
        raise OSError(28, "No space left on device")

    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    monkeypatch.setattr(bob, "write_head", no_head)
    fine = a.submit([archive("alice", 1)], now=NOW)
    headless = b.submit([archive("bob", 0)], now=NOW)
    release.set()
    first.result(10)
    assert fine.result(10)[0].seq == 2
    with pytest.raises(VaultUnavailable, match="No space left"):
        headless.result(10)
    # Its entry is committed (HEAD lags it): the source's retry finds it, archived once.
    monkeypatch.undo()
    (again,) = b.submit([archive("bob", 0)], now=NOW).result(10)
    assert isinstance(again, Receipt) and again.seq == 1 and again.duplicate
    assert [r.seq for r in bob.rows(kind="archived")] == [1]
