"""The vault's group commit (guardmail.vault.group): shared commits, order, all-or-nothing."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.core.item import Channel, Identity, Item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.base import JournalRow
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import group as group_module
from guardmail.vault import journal
from guardmail.vault.group import GroupCommitter, committer
from guardmail.vault.store import Archive, Receipt, Record, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield Vault(tmp_path / "vault", storage, "alice")
    storage.close()


def held(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold the first commit until the returned event is set, so that requests queue behind it
    (the vault underneath is the real one)."""
    release = threading.Event()
    commit = vault.commit
    first = [True]

    def slow(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        if first[0]:
            first[0] = False
            release.wait(10)
        return commit(entries, **kwargs)

    monkeypatch.setattr(vault, "commit", slow)
    return release


def archive(n: int) -> Archive:
    return Archive(raw=b"message %d\r\n" % n, source_ref=f"test:{n}")


def test_requests_queued_during_a_commit_share_the_next_group_in_submission_order(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = held(vault, monkeypatch)
    group = GroupCommitter(vault)
    futures = [group.submit([archive(n)], now=NOW) for n in range(50)]
    release.set()
    receipts = [f.result(10) for f in futures]
    assert group.groups == 2  # the first request alone, then the 49 that waited behind it
    for n, done in enumerate(receipts):
        (receipt,) = done
        assert isinstance(receipt, Receipt)
        assert receipt.seq == n + 1
        assert receipt.sha256 == hashlib.sha256(archive(n).raw).hexdigest()
        assert vault.blobs.get(receipt.sha256) == archive(n).raw
    rows = vault.rows(kind="archived")
    assert [r.source_ref for r in rows] == [f"test:{n}" for n in range(50)]
    assert len(vault.tree_heads()) == 2  # one signed head per group
    assert vault.head_witness() == (50, rows[-1].hash)  # nothing waited after the last group
    assert verify_vault(vault) == []


def test_every_request_of_a_failed_group_hears_the_failure(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = held(vault, monkeypatch)
    group = GroupCommitter(vault)
    first = group.submit([Record(kind="note", fields={"n": 0})], now=NOW)
    vault.root.mkdir(parents=True, exist_ok=True)
    (vault.root / "blobs").write_bytes(b"not a directory")
    waiting = [group.submit([archive(n)], now=NOW) for n in range(1, 6)]
    waiting.append(group.submit([Record(kind="note", fields={"n": 1})], now=NOW))
    release.set()
    assert len(first.result(10)) == 1  # a note only: no blob to write
    for future in waiting:
        with pytest.raises(VaultUnavailable, match="cannot archive 5 items"):
            future.result(10)
    assert [r.kind for r in vault.rows()] == ["note"]  # nothing of the failed group
    # Each source retries; the vault can take them again.
    (vault.root / "blobs").unlink()
    again = [group.submit([archive(n)], now=NOW) for n in range(1, 6)]
    assert [f.result(10)[0].seq for f in again] == [2, 3, 4, 5, 6]
    assert verify_vault(vault) == []


def test_a_request_cancelled_while_it_waits_is_not_committed_and_the_rest_are(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = held(vault, monkeypatch)
    group = GroupCommitter(vault)
    first = group.submit([archive(0)], now=NOW)
    gone = group.submit([archive(1)], now=NOW)
    last = group.submit([archive(2)], now=NOW)
    assert gone.cancel()
    release.set()
    assert [r.seq for r in first.result(10) + last.result(10)] == [1, 2]
    assert [r.source_ref for r in vault.rows()] == ["test:0", "test:2"]


def test_the_committer_thread_ends_when_nothing_waits_and_comes_back(vault: Vault) -> None:
    group = committer(vault)
    assert committer(vault) is group  # one per vault
    group.commit([archive(1)], now=NOW)
    for _ in range(500):
        if not any(t.name == "vault-group:state.db" for t in threading.enumerate()):
            break
        threading.Event().wait(0.01)
    assert not any(t.name == "vault-group:state.db" for t in threading.enumerate())
    (receipt,) = group.put_many([archive(2)], now=NOW)
    assert receipt.seq == 2
    (row,) = group.record_many([Record(kind="note", fields={})], now=NOW)
    assert row.seq == 3 and vault.head_witness() == (3, row.hash)


class Acts:
    """An actor that checks, when asked to act, that the item is already in the journal."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.seen: list[str] = []

    async def act(self, item: Item, verdict: Verdict) -> str:
        archived = {r.source_ref for r in self.vault.rows(kind="archived")}
        assert item.source_ref in archived, "acted on before its receipt"
        self.seen.append(item.source_ref)
        return "dropped"


def offender_item(n: int) -> Item:
    return Item(
        raw=b"<message from='ex@evil.example'><body>%d</body></message>" % n,
        channel=Channel.XMPP,
        tenant="alice",
        account="alice",
        source_ref=f"xmpp:alice:{n}",
        received_at=NOW,
        identities=(Identity(source="jid", address="ex@evil.example"),),
    )


def test_pipeline_items_submitted_in_a_row_share_groups_and_are_acted_on_only_when_durable(
    vault: Vault,
) -> None:
    rules = RuleSet([OffenderRule(name="ex", patterns=("ex@evil.example",), action=Action.BLOCK)])
    pipeline = Pipeline(vault=vault, rules=rules, clock=lambda: NOW)
    actor = Acts(vault)

    async def run() -> None:
        waiters = [pipeline.submit(offender_item(n), actor) for n in range(40)]
        outcomes = await asyncio.gather(*waiters)
        assert all(o.receipt is not None and o.done == "dropped" for o in outcomes)

    asyncio.run(run())
    rows = vault.rows()
    archived = [r for r in rows if r.kind == "archived"]
    assert [r.source_ref for r in archived] == [f"xmpp:alice:{n}" for n in range(40)]
    actions = [journal.entry(r)["archived_seq"] for r in rows if r.kind == "action"]
    assert sorted(actions) == [r.seq for r in archived]
    assert sorted(actor.seen) == sorted(r.source_ref for r in archived if r.source_ref)
    assert committer(vault).groups < 80  # 40 archive and 40 action requests, grouped
    assert verify_vault(vault) == []


def held_witness(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Hold every later HEAD witness write (``Vault.witness``) until the returned event is set."""
    release = threading.Event()
    witness = vault.witness

    def slow() -> None:
        release.wait(10)
        witness()

    monkeypatch.setattr(vault, "witness", slow)
    return release


def test_a_request_that_does_not_wait_for_the_witness_is_durable_before_it_and_never_led(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = GroupCommitter(vault)
    (first,) = group.commit([archive(1)], now=NOW)  # waits: HEAD names it
    assert isinstance(first, Receipt) and vault.head_witness() == (1, vault.rows()[0].hash)
    release = held_witness(vault, monkeypatch)
    (row,) = group.submit(
        [Record(kind="note", fields={})], now=NOW, witness=True, wait_witness=False
    ).result(10)
    # Told it is durable while the witness is still held: the entry is committed, and HEAD
    # lags it (names the entry before), never leads it.
    assert isinstance(row, JournalRow) and row.seq == 2
    assert [r.seq for r in vault.rows()] == [1, 2]
    assert vault.head_witness() == (1, vault.rows()[0].hash)
    release.set()
    for _ in range(500):  # the committer writes it once the request has its answer
        if vault.head_witness() == (2, row.hash):
            break
        threading.Event().wait(0.01)
    assert vault.head_witness() == (2, row.hash)
    assert verify_vault(vault) == []


def test_a_witness_that_cannot_be_written_after_the_answer_fails_no_request(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    group = GroupCommitter(vault)
    group.commit([archive(1)], now=NOW)

    def broken() -> None:
        raise VaultUnavailable("HEAD: disk full")

    monkeypatch.setattr(vault, "witness", broken)
    with caplog.at_level("ERROR", logger="guardmail"):
        (row,) = group.submit([Record(kind="note", fields={})], now=NOW, wait_witness=False).result(
            10
        )
        (again,) = group.commit([Record(kind="note", fields={})], now=NOW)  # waits: written
        assert isinstance(row, JournalRow) and isinstance(again, JournalRow)
        assert vault.head_witness() == (3, again.hash)
    assert "vault.witness_failed" in caplog.text


def test_a_stopped_committer_thread_fails_every_request_it_holds_or_queues(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What ``_commit`` does not catch (SystemExit here) ends the thread; before the fix, the
    # request it held and those queued behind it never heard anything: a source blocked on
    # ``result()`` waited for ever.
    commit = vault.commit
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stop(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        release.wait(10)
        raise SystemExit("stopped in the middle of a group")

    ended: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: ended.append(args.exc_type))
    monkeypatch.setattr(vault, "commit", stop)
    group = GroupCommitter(vault)
    held = group.submit([archive(0)], now=NOW)
    for _ in range(1000):  # until the thread holds it as its group, in the vault's commit
        if threads:
            break
        threading.Event().wait(0.01)
    assert held.running()
    (thread,) = threads
    queued = [group.submit([archive(n)], now=NOW) for n in range(1, 4)]
    gone = group.submit([archive(4)], now=NOW)
    assert gone.cancel()
    release.set()
    thread.join(10)
    assert not thread.is_alive() and ended == [SystemExit]
    for future in [held, *queued]:
        with pytest.raises(VaultUnavailable, match="group committer of vault .* stopped"):
            future.result(10)
    assert gone.cancelled()
    assert vault.rows() == []  # nothing of them was journaled
    # The next request starts another thread, and each source's retry is archived once.
    monkeypatch.setattr(vault, "commit", commit)
    again = [group.submit([archive(n)], now=NOW) for n in range(4)]
    assert [f.result(10)[0].seq for f in again] == [1, 2, 3, 4]
    assert verify_vault(vault) == []


def test_nothing_to_commit_is_answered_at_once_without_a_thread(vault: Vault) -> None:
    group = GroupCommitter(vault)
    before = set(threading.enumerate())
    assert group.submit([], now=NOW).result(0) == []
    assert group.groups == 0
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("vault-group")]


def test_under_a_flood_groups_are_bounded_and_the_head_witness_waits_for_the_last(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "MAX_ENTRIES", 2)
    monkeypatch.setattr(group_module, "WITNESS_SECONDS", 3600.0)
    release = threading.Event()
    commit = vault.commit
    groups: list[tuple[int, bool]] = []  # (entries, witness) of each commit

    def record(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        if not groups:
            release.wait(10)  # the first group holds the rest back until all are queued
        groups.append((len(entries), kwargs["witness"]))
        return commit(entries, **kwargs)

    monkeypatch.setattr(vault, "commit", record)
    group = GroupCommitter(vault)
    futures = [group.submit([archive(0)], now=NOW)]
    for _ in range(1000):
        if futures[0].running():
            break
        threading.Event().wait(0.01)
    futures += [group.submit([archive(n)], now=NOW) for n in range(1, 6)]
    release.set()
    assert [f.result(10)[0].seq for f in futures] == [1, 2, 3, 4, 5, 6]
    # At most MAX_ENTRIES a group; while more wait, the witness is left to a later group; the
    # last one (nothing waits) writes it, so it names the journal's last entry.
    assert groups == [(1, True), (2, False), (2, False), (1, True)]
    assert vault.head_witness() == (6, vault.rows()[-1].hash)
    assert verify_vault(vault) == []
