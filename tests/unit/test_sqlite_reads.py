"""SQLiteStorage's reads: a snapshot on a connection of their own, never queued behind a write
transaction of the same storage (and its fsync), never seeing what it has not committed."""

import threading
from pathlib import Path

import pytest

from guardmail.storage.base import Checkpoint, StorageClosed
from guardmail.storage.sqlite import SQLiteStorage


def test_a_read_does_not_wait_for_a_write_transaction_and_sees_only_what_is_committed(
    tmp_path: Path,
) -> None:
    storage = SQLiteStorage(tmp_path / "state.db")
    writing, release = threading.Event(), threading.Event()

    def write() -> None:
        with storage.transaction() as tx:
            tx.set_checkpoint("t", "imap", "INBOX", Checkpoint(uidvalidity=1, last_uid=7))
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(10)
        seen: list[Checkpoint | None] = []

        def read() -> None:
            with storage.read() as tx:
                seen.append(tx.checkpoint("t", "imap", "INBOX"))

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the read waited for the write transaction"
        assert seen == [None]  # not committed yet
    finally:
        release.set()
        writer.join(10)
    with storage.read() as tx:
        assert tx.checkpoint("t", "imap", "INBOX") == Checkpoint(uidvalidity=1, last_uid=7)
    storage.close()


def test_reads_are_read_only_and_a_closed_storage_refuses_them(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.db")
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        with storage.read() as tx:
            tx.set_checkpoint("t", "imap", "INBOX", Checkpoint(uidvalidity=1, last_uid=1))
    with storage.read() as tx:
        assert tx.checkpoint("t", "imap", "INBOX") is None
    storage.close()
    with pytest.raises(StorageClosed):
        with storage.read():
            pass
