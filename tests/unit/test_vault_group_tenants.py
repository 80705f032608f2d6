"""Group commit across tenants (guardmail.vault.group, issue 28): the vaults of one storage (an
ISP daemon's tenants) share a group's transaction; one tenant's failure is its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.errors import VaultUnavailable
from guardmail.storage.base import JournalRow
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import group as group_module
from guardmail.vault import group_parts
from guardmail.vault.group import GroupCommitter, SharedCommitter, committer
from guardmail.vault.store import Archive, Receipt, Record, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield storage
    storage.close()


def vaults(tmp_path: Path, storage: SQLiteStorage, *names: str) -> list[Vault]:
    return [Vault(tmp_path / "vault" / name, storage, name) for name in names]


def archive(tenant: str, n: int) -> Archive:
    return Archive(raw=b"%s's message %d\r\n" % (tenant.encode(), n), source_ref=f"t:{n}")


def held(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Hold ``vault``'s first group (a group of it alone) until the second event is set; the
    first is set once it holds, so that requests queue behind it."""
    holding, release = threading.Event(), threading.Event()
    commit = vault.commit

    def slow(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        holding.set()
        release.wait(10)
        monkeypatch.setattr(vault, "commit", commit)
        return commit(entries, **kwargs)

    monkeypatch.setattr(vault, "commit", slow)
    return holding, release


@contextmanager
def transactions(storage: SQLiteStorage) -> Iterator[list[int]]:
    """Count the write transactions made on ``storage`` (each a SQLite FULL commit)."""
    made = [0]
    transaction = storage.transaction

    @contextmanager
    def counted() -> Iterator[Any]:
        made[0] += 1
        with transaction() as tx:
            yield tx

    storage.transaction = counted  # type: ignore[method-assign]
    try:
        yield made
    finally:
        del storage.transaction


def test_requests_of_two_tenants_share_one_transaction_each_on_its_own_chain(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    with transactions(storage) as made:
        queued = []
        for n in range(1, 4):
            queued.append((alice, a.submit([archive("alice", n)], now=NOW)))
            queued.append((bob, b.submit([archive("bob", n)], now=NOW)))
        note = b.submit([Record(kind="note", fields={"n": 9})], now=NOW)
        release.set()
        assert first.result(10)[0].seq == 1
        results = [(v, f.result(10)) for v, f in queued]
        (row,) = note.result(10)
        assert made[0] == 2  # alice's held group, then both tenants' entries in one commit
    assert shared.groups == 2 and shared.vaults == 3
    # Each tenant's own chain, in its own submission order, its blobs in its own directory.
    assert [d[0].seq for v, d in results if v is alice] == [2, 3, 4]
    assert [d[0].seq for v, d in results if v is bob] == [1, 2, 3]
    assert isinstance(row, JournalRow) and row.seq == 4 and row.tenant == "bob"
    for vault, done in results:
        (receipt,) = done
        assert isinstance(receipt, Receipt)
        assert vault.blobs.get(receipt.sha256).startswith(vault.tenant.encode())
        other = bob if vault is alice else alice
        assert not other.blobs.path(receipt.sha256).exists()
    assert [r.source_ref for r in bob.rows(kind="archived")] == ["t:1", "t:2", "t:3"]
    # Each its own signed tree head for the shared group, and its own HEAD witness.
    assert len(alice.tree_heads()) == 2 and len(bob.tree_heads()) == 1
    assert alice.head_witness() == (4, alice.rows()[-1].hash)
    assert bob.head_witness() == (4, row.hash)
    assert verify_vault(alice) == [] and verify_vault(bob) == []


def test_a_tenant_whose_blobs_cannot_be_written_fails_alone_and_its_retry_succeeds(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = vaults(tmp_path, storage, "alice", "bob", "carol")
    shared = SharedCommitter("test")
    a, b, c = (GroupCommitter(v, shared) for v in (alice, bob, carol))
    a.commit([archive("alice", 0)], now=NOW)
    bob.root.mkdir(parents=True)
    (bob.root / "blobs").write_bytes(b"a file where bob's blob directory should be")
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 1)], now=NOW)
    assert holding.wait(10)
    broken = [b.submit([archive("bob", n)], now=NOW) for n in range(3)]
    fine = [c.submit([archive("carol", n)], now=NOW) for n in range(3)]
    fine.append(a.submit([archive("alice", 2)], now=NOW))
    release.set()
    first.result(10)
    assert [f.result(10)[0].seq for f in fine] == [1, 2, 3, 3]
    for future in broken:
        with pytest.raises(VaultUnavailable, match=f"vault {bob.root} cannot archive"):
            future.result(10)
    assert bob.rows() == []  # nothing of bob's part journaled
    assert len(carol.rows(kind="archived")) == 3 and len(alice.rows(kind="archived")) == 3
    # Repaired, bob's source retries and is archived.
    (bob.root / "blobs").unlink()
    assert [b.submit([archive("bob", n)], now=NOW).result(10)[0].seq for n in range(3)] == [1, 2, 3]
    assert all(verify_vault(v) == [] for v in (alice, bob, carol))


def test_a_tenant_failing_inside_the_transaction_is_left_out_and_the_rest_commit(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    a.commit([archive("alice", 0)], now=NOW)
    # Bob's part has no blob to write; his HEAD cannot be read (his vault is a file), which
    # fails him inside the shared transaction.
    bob.root.parent.mkdir(parents=True, exist_ok=True)
    bob.root.write_bytes(b"not a directory")
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 1)], now=NOW)
    assert holding.wait(10)
    with transactions(storage) as made:
        notes = [b.submit([Record(kind="note", fields={"n": n})], now=NOW) for n in range(2)]
        after = a.submit([archive("alice", 2)], now=NOW)
        release.set()
        first.result(10)
        assert after.result(10)[0].seq == 3
        for future in notes:
            with pytest.raises(VaultUnavailable, match=f"vault {bob.root} cannot journal note"):
                future.result(10)
        assert made[0] == 3  # alice's held group; the shared one, made again without bob once
    assert bob.rows() == []
    assert [r.seq for r in alice.rows()] == [1, 2, 3]
    assert verify_vault(alice) == []


def test_one_tenants_flood_holds_another_back_by_one_bounded_group_at_most(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "MAX_ENTRIES", 4)
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    groups: list[list[str]] = []
    take = shared._take

    def taken() -> Any:
        group = take()
        groups.append([r.vault.tenant for r in group])
        return group

    monkeypatch.setattr(shared, "_take", taken)
    flood = [a.submit([archive("alice", n)], now=NOW) for n in range(1, 21)]
    late = b.submit([archive("bob", 0)], now=NOW)  # after 20 of alice's
    release.set()
    assert late.result(10)[0].seq == 1
    assert [f.result(10)[0].seq for f in [first, *flood]] == list(range(1, 22))
    # In the first group after the held one, beside alice's, not behind her 20 requests.
    assert "bob" in groups[0] and len(groups[0]) == 4
    assert all(len(g) <= 4 for g in groups)
    assert verify_vault(alice) == [] and verify_vault(bob) == []


def test_the_committers_of_vaults_on_one_storage_share_its_one_committer(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    elsewhere = SQLiteStorage(tmp_path / "other.db")
    try:
        (carol,) = vaults(tmp_path, elsewhere, "carol")
        assert committer(alice) is committer(alice)
        assert committer(alice).shared is committer(bob).shared
        assert committer(carol).shared is not committer(alice).shared
        (receipt,) = committer(carol).put_many([archive("carol", 0)], now=NOW)
        assert receipt.seq == 1 and carol.rows()[0].tenant == "carol"
    finally:
        elsewhere.close()


def test_a_tenant_whose_disk_stalls_fails_alone_after_a_bound_and_the_rest_commit(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_parts, "PART_SECONDS", 0.2)
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    unstuck = threading.Event()
    write_blobs = bob.write_blobs

    def hung(*args: Any, **kwargs: Any) -> None:  # a hung mount: returns when it comes back
        unstuck.wait(10)
        write_blobs(*args, **kwargs)

    monkeypatch.setattr(bob, "write_blobs", hung)
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    stuck = b.submit([archive("bob", 0)], now=NOW)
    fine = a.submit([archive("alice", 1)], now=NOW)
    release.set()
    assert [first.result(10)[0].seq, fine.result(10)[0].seq] == [1, 2]
    with pytest.raises(VaultUnavailable, match="still writing after 0.2 s"):
        stuck.result(10)
    assert bob.rows() == []
    unstuck.set()  # the mount is back: the source's retry is archived
    monkeypatch.setattr(bob, "write_blobs", write_blobs)
    assert b.submit([archive("bob", 0)], now=NOW).result(10)[0].seq == 1
    assert verify_vault(alice) == [] and verify_vault(bob) == []


def test_a_stalled_tenants_retry_takes_no_thread_while_its_late_write_still_runs(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry of a tenant whose mount hangs would otherwise hold another of the shared
    pool's threads, until none is left for the other tenants' parts."""
    monkeypatch.setattr(group_parts, "PART_SECONDS", 0.2)
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    unstuck, calls = threading.Event(), [0]
    write_blobs = bob.write_blobs

    def hung(*args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        unstuck.wait(10)
        write_blobs(*args, **kwargs)

    monkeypatch.setattr(bob, "write_blobs", hung)
    for n in range(2):  # the first attempt stalls; the retry is refused while it runs
        holding, release = held(alice, monkeypatch)
        first = a.submit([archive("alice", 2 * n)], now=NOW)
        assert holding.wait(10)
        stuck = b.submit([archive("bob", 0)], now=NOW)
        fine = a.submit([archive("alice", 2 * n + 1)], now=NOW)
        release.set()
        assert [first.result(10)[0].seq, fine.result(10)[0].seq] == [2 * n + 1, 2 * n + 2]
        with pytest.raises(VaultUnavailable, match="still"):
            stuck.result(10)
    assert calls[0] == 1
    unstuck.set()
    for _ in range(200):  # the late write ends; the tenant is no longer refused
        if bob not in group_parts._LATE:
            break
        threading.Event().wait(0.05)
    monkeypatch.setattr(bob, "write_blobs", write_blobs)
    assert b.submit([archive("bob", 0)], now=NOW).result(10)[0].seq == 1
    assert verify_vault(alice) == [] and verify_vault(bob) == []


def test_a_mixed_groups_heads_are_written_before_the_next_groups_so_head_names_the_last(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = vaults(tmp_path, storage, "alice", "bob")
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    slow_head = threading.Event()
    write_head = alice.write_head
    calls: list[int] = []

    def slow(row: JournalRow) -> None:  # the mixed group's HEAD: slow, while the next commits
        calls.append(row.seq)
        if len(calls) == 1:
            slow_head.wait(0.5)
        write_head(row)

    monkeypatch.setattr(alice, "write_head", slow)
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    mixed = [a.submit([archive("alice", 1)], now=NOW), b.submit([archive("bob", 1)], now=NOW)]
    release.set()
    first.result(10)
    # The mixed group is taken; alice's next request is a group of her alone (Vault.commit
    # writes its HEAD itself), queued while the finisher still writes the mixed group's.
    for _ in range(1000):
        if calls:
            break
        threading.Event().wait(0.005)
    last = a.submit([Record(kind="note", fields={})], now=NOW)
    (row,) = last.result(10)
    assert [f.result(10)[0].seq for f in mixed] == [2, 1]
    assert calls == [2]  # the mixed group's (the single group's own went through commit)
    assert isinstance(row, JournalRow) and alice.head_witness() == (row.seq, row.hash)
    assert verify_vault(alice) == [] and verify_vault(bob) == []
