"""The relayed copies' database as the daemon opens it (``WRITER``: WAL without an fsync per
commit; ``READER``: never waits): a record committed survives the process being killed -9 before
any checkpoint, and the look-up before each message reads it on the event loop, or in a thread
when the reader meets a lock."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guardmail.channels.smtp.relayed import FILE, READER, WRITER, RelayedCopies
from guardmail.storage.base import StorageClosed, StorageUnavailable
from guardmail.storage.sqlite import SQLiteStorage

QUEUE_ID = "4KILLED9Q1"
KEY = (QUEUE_ID, hashlib.sha256(b"message").hexdigest())

# The daemon's side: the record committed through ``remember`` (what the filter awaits before
# answering Postfix 250), then the process killed at once: no close, so no checkpoint either.
CHILD = f"""
import asyncio, os, signal, sys
from pathlib import Path
from guardmail.channels.smtp.relayed import READER, WRITER, RelayedCopies
from guardmail.storage.sqlite import SQLiteStorage
path = Path(sys.argv[1])
own = (SQLiteStorage(path, **WRITER), SQLiteStorage(path, **READER))
copies = RelayedCopies(own[0], "default", reader=own[1], reader_never_waits=True, owned=own)
asyncio.run(copies.remember({KEY!r}, ["rcpt:a@x.test", "quarantine:q@x.test"]))
print("remembered", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_record_committed_survives_kill_9_before_any_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / FILE
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "remembered\n"
    # Not checkpointed: the record is in the write-ahead log only, not in the database file.
    wal = path.with_name(FILE + "-wal")
    assert QUEUE_ID.encode() in wal.read_bytes()
    assert QUEUE_ID.encode() not in path.read_bytes()
    own = (SQLiteStorage(path, **WRITER), SQLiteStorage(path, **READER))
    copies = RelayedCopies(own[0], "default", reader=own[1], reader_never_waits=True, owned=own)
    assert asyncio.run(copies.look_up(KEY)) == {"rcpt:a@x.test", "quarantine:q@x.test"}
    assert copies.get(KEY) == {"rcpt:a@x.test", "quarantine:q@x.test"}
    copies.close()


def test_the_look_up_reads_on_the_loop_and_goes_to_a_thread_when_the_reader_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / FILE
    own = (SQLiteStorage(path, **WRITER), SQLiteStorage(path, **READER))
    copies = RelayedCopies(own[0], "default", reader=own[1], reader_never_waits=True, owned=own)
    asyncio.run(copies.remember(KEY, ["rcpt:a@x.test"]))
    threads: list[str] = []
    real = asyncio.to_thread

    async def counted(func, /, *args):  # type: ignore[no-untyped-def]
        threads.append(func.__name__)
        return await real(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    assert asyncio.run(copies.look_up(KEY)) == {"rcpt:a@x.test"}
    assert asyncio.run(copies.look_up(None)) == set()
    assert threads == []  # on the loop: no thread hop

    def busy() -> None:
        raise StorageUnavailable("database is locked")

    monkeypatch.setattr(own[1], "read", busy)
    assert asyncio.run(copies.look_up(KEY)) == {"rcpt:a@x.test"}  # the writer's answer
    assert threads == ["_read_writer"]
    copies.close()
    monkeypatch.delattr(own[1], "read")  # the reader's own again, closed now
    with pytest.raises(StorageClosed):  # stopping: said at once, not retried in a thread
        asyncio.run(copies.look_up(KEY))
    assert threads == ["_read_writer"]


def test_the_reader_never_waits_and_the_writer_does_not_fsync_each_commit(tmp_path: Path) -> None:
    """What ``look_up`` and the trade-off rely on: READER's busy timeout is zero (a lock it cannot
    take is StorageUnavailable at once, never a wait on the event loop), a WAL read is not held
    up by a writer, and only WRITER's connection gives up the fsync per commit."""
    path = tmp_path / FILE
    writer, reader, other = (
        SQLiteStorage(path, **WRITER),
        SQLiteStorage(path, **READER),
        SQLiteStorage(path),
    )
    pragma = {
        name: [s._conn.execute(f"PRAGMA {name}").fetchone()[0] for s in (writer, reader, other)]
        for name in ("busy_timeout", "synchronous", "journal_mode")
    }
    assert pragma == {
        "busy_timeout": [10_000, 0, 10_000],
        "synchronous": [1, 2, 2],  # NORMAL, FULL, FULL
        "journal_mode": ["wal", "wal", "wal"],
    }
    with other.transaction():  # holds the write lock
        with pytest.raises(StorageUnavailable), reader.transaction():
            pass
        with reader.read() as tx:
            assert tx.relayed("default", *KEY) == set()
    for storage in (writer, reader, other):
        storage.close()
