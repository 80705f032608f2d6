"""The evidence vault keeps exact bytes durably and detects any tampering, naming the entry."""

import hashlib
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.errors import VaultUnavailable
from guardmail.storage.base import JournalRow, StorageUnavailable, Transaction
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.journal import GENESIS, check_chain
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "state" / "guardmail.sqlite3")
    yield s
    s.close()


@pytest.fixture
def vault(tmp_path: Path, storage: SQLiteStorage) -> Vault:
    return Vault(tmp_path / "state" / "vault" / "jane", storage, "jane")


def fill(vault: Vault, n: int = 4) -> list[bytes]:
    raws = [f"From: s{i}@x.example\r\n\r\nbody {i}\x00\xff".encode("latin-1") for i in range(n)]
    for i, raw in enumerate(raws):
        vault.put(raw, source_ref=f"new/{i}", metadata={"offender": "X"}, now=NOW)
    return raws


def sql(storage: SQLiteStorage, statement: str) -> None:
    # Tampering from outside, as an attacker with file access would.
    storage._conn.execute(statement)


def test_put_stores_exact_bytes_under_their_sha256(vault: Vault) -> None:
    raw = b"From: a@b\r\n\r\n\x00\x80\xff\r\n.\r\n"
    receipt = vault.put(raw, source_ref="new/1", metadata={}, now=NOW)
    assert receipt.sha256 == hashlib.sha256(raw).hexdigest()
    assert receipt.seq == 1 and not receipt.duplicate
    assert vault.blobs.get(receipt.sha256) == raw


def test_blob_files_are_0600_and_directories_0700(vault: Vault) -> None:
    receipt = vault.put(b"x", source_ref="new/1", metadata={}, now=NOW)
    path = vault.blobs.path(receipt.sha256)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(vault.blobs.root.stat().st_mode) == 0o700


def test_same_bytes_from_same_source_archive_once(vault: Vault) -> None:
    first = vault.put(b"same", source_ref="new/1", metadata={}, now=NOW)
    again = vault.put(b"same", source_ref="new/1", metadata={}, now=NOW)
    other = vault.put(b"same", source_ref="new/2", metadata={}, now=NOW)
    assert again.duplicate and again.seq == first.seq
    assert not other.duplicate and other.seq == 2


def test_journal_entries_chain_and_verify_clean(vault: Vault) -> None:
    fill(vault)
    vault.record("action", {"archived_seq": 1}, now=NOW)
    assert check_chain(vault.rows()) == []
    assert verify_vault(vault) == []


def test_flipped_blob_byte_is_named(vault: Vault) -> None:
    fill(vault)
    row = vault.row(3)
    assert row is not None and row.sha256
    path = vault.blobs.path(row.sha256)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    problems = [str(p) for p in verify_vault(vault)]
    assert problems == [f"entry 3: blob {row.sha256} altered (SHA-256 mismatch)"]


def test_missing_blob_is_named(vault: Vault) -> None:
    fill(vault)
    row = vault.row(2)
    assert row is not None and row.sha256
    vault.blobs.path(row.sha256).unlink()
    assert [p.seq for p in verify_vault(vault)] == [2]


def test_altered_journal_entry_is_named(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault)
    sql(storage, "UPDATE journal SET body = replace(body, '\"X\"', '\"Y\"') WHERE seq = 2")
    problems = [str(p) for p in verify_vault(vault)]
    assert problems[0] == "entry 2: content altered (hash mismatch)"
    # and the signed tree heads over it (guardmail.vault.treelog) see it too
    assert all(p.startswith("entry 2: ") for p in problems) and len(problems) == 3


def test_removed_journal_entry_is_named(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault)
    sql(storage, "DELETE FROM journal WHERE seq = 2")
    problems = verify_vault(vault)
    assert any(p.seq == 3 and "removed or reordered" in str(p) for p in problems)


def test_reordered_journal_entries_are_named(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault)
    # Swap entries 2 and 3 wholesale, keeping their seq numbers in place.
    sql(storage, "UPDATE journal SET seq = -2 WHERE seq = 2")
    sql(storage, "UPDATE journal SET seq = 2 WHERE seq = 3")
    sql(storage, "UPDATE journal SET seq = 3 WHERE seq = -2")
    problems = verify_vault(vault)
    assert {p.seq for p in problems} >= {2, 3}


def test_entries_cut_from_the_end_are_detected_by_the_head_witness(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault)
    sql(storage, "DELETE FROM journal WHERE seq = 4")
    assert [str(p) for p in verify_vault(vault)] == [
        "entry 4: missing: HEAD names it but the journal ends at entry 3",
        "entry 4: the signed tree head over entries 1-4 (signed 2026-11-25T12:00:00+00:00): "
        "the journal ends at entry 3 (entries cut from the end)",
    ]


def test_tenants_do_not_see_each_others_entries(tmp_path: Path, storage: SQLiteStorage) -> None:
    jane = Vault(tmp_path / "v" / "jane", storage, "jane")
    joe = Vault(tmp_path / "v" / "joe", storage, "joe")
    jane.put(b"jane's", source_ref="a", metadata={}, now=NOW)
    receipt = joe.put(b"joe's", source_ref="a", metadata={}, now=NOW)
    assert receipt.seq == 1
    assert [r.sha256 for r in jane.rows()] == [hashlib.sha256(b"jane's").hexdigest()]
    assert not jane.blobs.path(receipt.sha256).exists()
    assert verify_vault(jane) == [] and verify_vault(joe) == []


def test_unwritable_vault_raises_vault_unavailable_and_journals_nothing(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    blocked = tmp_path / "notadir"
    blocked.write_text("a file where the vault directory should be")
    vault = Vault(blocked, storage, "jane")
    with pytest.raises(VaultUnavailable, match="cannot archive"):
        vault.put(b"evidence", source_ref="new/1", metadata={}, now=NOW)
    assert vault.rows() == []


# --- batches: put_many / record_many -------------------------------------------------------


def archives(n: int) -> list[Archive]:
    return [
        Archive(raw=f"From: s@x.example\r\n\r\nmessage {i}\r\n".encode(), source_ref=f"uid/{i}")
        for i in range(n)
    ]


def test_put_many_journals_each_item_in_order_and_the_chain_verifies(vault: Vault) -> None:
    batch = archives(3)
    receipts = vault.put_many(batch, now=NOW)
    assert [r.seq for r in receipts] == [1, 2, 3]
    assert not any(r.duplicate for r in receipts)
    assert [vault.blobs.get(r.sha256) for r in receipts] == [a.raw for a in batch]
    assert [r.source_ref for r in vault.rows()] == ["uid/0", "uid/1", "uid/2"]
    last = vault.row(3)
    assert last is not None and vault.head_witness() == (3, last.hash)
    assert verify_vault(vault) == []


def test_put_many_archives_the_same_bytes_once_per_scope_within_and_across_batches(
    vault: Vault,
) -> None:
    same = b"From: s@x.example\r\n\r\nsame\r\n"
    first = vault.put_many(
        [
            Archive(raw=same, source_ref="uid/1", scope="imap:acct/INBOX"),
            Archive(raw=same, source_ref="uid/2", scope="imap:acct/INBOX"),
            Archive(raw=same, source_ref="uid/3", scope="imap:acct/Other"),
        ],
        now=NOW,
    )
    assert [(r.seq, r.duplicate) for r in first] == [(1, False), (1, True), (2, False)]
    again = vault.put_many(
        [Archive(raw=same, source_ref="uid/7", scope="imap:acct/INBOX")], now=NOW
    )
    assert [(r.seq, r.duplicate) for r in again] == [(1, True)]
    assert len(vault.rows()) == 2


def test_put_many_failing_part_way_journals_nothing_and_the_retry_archives_each_once(
    vault: Vault,
) -> None:
    batch = archives(3)
    shas = [hashlib.sha256(a.raw).hexdigest() for a in batch]
    assert len({s[:2] for s in shas}) == 3  # three shard directories
    vault.blobs.root.mkdir(parents=True)
    blocker = vault.blobs.root / shas[1][:2]
    blocker.write_text("a file where the second blob's directory should be")
    with pytest.raises(VaultUnavailable, match="cannot archive 3 items"):
        vault.put_many(batch, now=NOW)
    # Blobs are renamed into place only once all of them are written and fsync'd.
    assert not vault.blobs.path(shas[0]).exists()
    assert not [p for p in vault.blobs.root.rglob("*") if p.name.endswith(".tmp")]
    assert vault.rows() == [] and vault.head_witness() is None
    blocker.unlink()
    receipts = vault.put_many(batch, now=NOW)
    assert [(r.seq, r.duplicate) for r in receipts] == [(1, False), (2, False), (3, False)]
    assert verify_vault(vault) == []


class FailingInsertStorage:
    """SQLite storage whose ``fail_at``-th journal insert raises, as a full disk would."""

    def __init__(self, storage: SQLiteStorage, fail_at: int) -> None:
        self.storage = storage
        self.fail_at = fail_at
        self.inserts = 0

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.storage.transaction() as tx:
            original = tx.journal_insert
            original_many = tx.journal_insert_many

            def insert(row: JournalRow) -> None:
                self.inserts += 1
                if self.inserts == self.fail_at:
                    raise StorageUnavailable("disk I/O error")
                original(row)

            def insert_many(rows: Sequence[JournalRow]) -> None:
                # A statement of many rows fails as a whole, as SQLite's does.
                self.inserts += len(rows)
                if self.inserts - len(rows) < self.fail_at <= self.inserts:
                    raise StorageUnavailable("disk I/O error")
                original_many(rows)

            tx.journal_insert = insert  # type: ignore[method-assign]
            tx.journal_insert_many = insert_many  # type: ignore[method-assign]
            yield tx

    def read(self) -> AbstractContextManager[Transaction]:
        return self.storage.read()

    def close(self) -> None:
        self.storage.close()


def test_put_many_rolls_back_the_whole_batch_when_the_database_fails(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    failing = FailingInsertStorage(storage, fail_at=2)
    vault = Vault(tmp_path / "v", failing, "jane")
    with pytest.raises(VaultUnavailable):
        vault.put_many(archives(3), now=NOW)
    assert vault.rows() == []
    assert [r.seq for r in vault.put_many(archives(3), now=NOW)] == [1, 2, 3]
    assert verify_vault(vault) == []


def test_witness_can_wait_for_the_actions_and_lags_without_a_problem(vault: Vault) -> None:
    receipts = vault.put_many(archives(2), now=NOW, witness=False)
    # A brand-new vault's HEAD names entry 0 before the first entry is committed.
    assert vault.head_witness() == (0, GENESIS) and verify_vault(vault) == []
    vault.witness()
    second = vault.row(receipts[1].seq)
    assert second is not None and vault.head_witness() == (2, second.hash)
    vault.put_many(archives(4)[2:], now=NOW, witness=False)
    assert vault.head_witness() == (2, second.hash)  # behind the head: allowed
    assert verify_vault(vault) == []
    rows = vault.record_many(
        [Record(kind="action", fields={"archived_seq": r.seq}, sha256=r.sha256) for r in receipts],
        now=NOW,
    )
    assert [r.seq for r in rows] == [5, 6]
    assert vault.head_witness() == (6, rows[-1].hash)
    assert check_chain(vault.rows()) == [] and verify_vault(vault) == []


def test_record_many_is_all_or_nothing(tmp_path: Path, storage: SQLiteStorage) -> None:
    vault = Vault(tmp_path / "v", FailingInsertStorage(storage, fail_at=2), "jane")
    with pytest.raises(VaultUnavailable, match="cannot journal action"):
        vault.record_many([Record(kind="action", fields={"n": i}) for i in range(3)], now=NOW)
    assert vault.rows() == []


def test_a_reader_takes_no_write_lock_and_cannot_write(tmp_path: Path) -> None:
    # status and evidence list read while the daemon archives: with BEGIN IMMEDIATE they
    # took the write lock and could make the daemon's archive wait or fail.
    path = tmp_path / "state.sqlite3"
    reader, writer = SQLiteStorage(path), SQLiteStorage(path)
    try:
        with reader.read() as seen:
            seen.journal_rows("t")
            with writer.transaction() as tx:  # another connection writes meanwhile
                tx.set_cursor("t", "s", "n", "v")
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                seen.set_cursor("t", "s", "n", "w")
        with reader.read() as seen:
            assert seen.cursor("t", "s", "n") == "v"
        with reader.transaction() as tx:  # query_only does not outlive the read
            tx.set_cursor("t", "s", "n", "x")
    finally:
        reader.close()
        writer.close()


def test_rows_stream_page_by_page_in_order_with_the_kind_read_from_the_body(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault, 7)
    every = vault.rows()
    for page in (1, 2, 3, 100):
        assert list(vault.iter_rows(page=page)) == every
        assert list(vault.iter_rows(kind="archived", page=page)) == vault.rows(kind="archived")
    # A page is one read snapshot: a writer may commit between pages without waiting.
    stream = vault.iter_rows(page=2)
    next(stream)
    with storage.transaction() as tx:
        tx.set_cursor("jane", "s", "n", "v")
    assert len([next(stream), *stream]) == len(every) - 1
