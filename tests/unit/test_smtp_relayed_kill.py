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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guardmail.channels.smtp import relayed
from guardmail.channels.smtp.relayed import (
    FILE,
    KEEP,
    LOOP_WRITER,
    READER,
    WRITER,
    RelayedCopies,
)
from guardmail.storage.base import StorageClosed, StorageUnavailable
from guardmail.storage.sqlite import SQLiteStorage

QUEUE_ID = "4KILLED9Q1"
KEY = (QUEUE_ID, hashlib.sha256(b"message").hexdigest())

# The daemon's side: the record committed through ``remember`` (what the filter awaits before
# answering Postfix 250), on the event loop as the daemon opens the database, then the process
# killed at once: no close, so no checkpoint either.
CHILD = f"""
import asyncio, os, signal, sys
from pathlib import Path
from guardmail.channels.smtp.relayed import LOOP_WRITER, READER, WRITER, RelayedCopies
from guardmail.storage.sqlite import SQLiteStorage
path = Path(sys.argv[1])
own = tuple(SQLiteStorage(path, **o) for o in (WRITER, READER, LOOP_WRITER))
copies = RelayedCopies(
    own[0], "default", reader=own[1], reader_never_waits=True, loop_writer=own[2], owned=own
)
copies._thread.shutdown()  # the record is committed on the loop: no thread may be asked
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


def _daemons(path: Path, clock: Callable[[], datetime] | None = None) -> RelayedCopies:
    """The relayed copies as the daemon opens them (daemon/supervisor.py)."""
    own = tuple(SQLiteStorage(path, **o) for o in (WRITER, READER, LOOP_WRITER))
    return RelayedCopies(
        own[0],
        "default",
        reader=own[1],
        reader_never_waits=True,
        loop_writer=own[2],
        owned=own,
        **({"clock": clock} if clock else {}),
    )


def test_a_record_is_committed_on_the_loop_and_goes_to_the_thread_when_the_lock_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / FILE
    copies = _daemons(path)
    hops: list[str] = []
    real_submit = copies._thread.submit

    def submit(fn, /, *args):  # type: ignore[no-untyped-def]
        hops.append(fn.__name__)
        return real_submit(fn, *args)

    monkeypatch.setattr(copies._thread, "submit", submit)
    asyncio.run(copies.remember(KEY, ["rcpt:a@x.test"]))
    assert hops == []  # committed on the loop
    assert copies.get(KEY) == {"rcpt:a@x.test"}

    other = SQLiteStorage(path)  # another writer holds the lock: the loop must not wait for it
    second = (QUEUE_ID + "2", KEY[1])

    async def beside_a_writer() -> None:
        with other.transaction():
            pending = asyncio.ensure_future(copies.remember(second, ["rcpt:b@x.test"]))
            await asyncio.sleep(0.05)
            assert not pending.done()  # waiting in the thread, the loop free
        await pending

    asyncio.run(beside_a_writer())
    assert hops == ["add"]
    assert copies.get(second) == {"rcpt:b@x.test"}
    other.close()
    copies.close()


def test_the_loops_writer_never_checkpoints_and_the_thread_does_every_few_hundred_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint fsyncs: never on the loop. The thread's maintenance keeps the log from
    growing without end and forgets rows older than ``KEEP``."""
    monkeypatch.setattr(relayed, "MAINTAIN_EVERY", 3)
    path = tmp_path / FILE
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    copies = _daemons(path, clock=lambda: now[0])
    old = ("0LDQUEUE01", KEY[1])

    async def records() -> None:
        await copies.remember(old, ["rcpt:old@x.test"])
        now[0] += KEEP + timedelta(hours=1)
        await copies.remember(KEY, ["rcpt:a@x.test"])
        assert copies._maintainer is None
        assert QUEUE_ID.encode() not in path.read_bytes()  # in the log only
        await copies.remember((QUEUE_ID + "3", KEY[1]), ["rcpt:c@x.test"])  # the third
        assert copies._maintainer is not None
        await copies._maintainer

    asyncio.run(records())
    assert QUEUE_ID.encode() in path.read_bytes()  # checkpointed into the database
    assert copies.get(old) == set()  # forgotten
    assert copies.get(KEY) == {"rcpt:a@x.test"}
    copies.close()


def test_the_loops_writer_neither_waits_nor_fsyncs_nor_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / FILE
    loop_writer, writer = SQLiteStorage(path, **LOOP_WRITER), SQLiteStorage(path, **WRITER)
    pragma = {
        name: [s._conn.execute(f"PRAGMA {name}").fetchone()[0] for s in (loop_writer, writer)]
        for name in ("busy_timeout", "synchronous", "wal_autocheckpoint")
    }
    assert pragma == {
        "busy_timeout": [0, 10_000],
        "synchronous": [1, 1],  # NORMAL
        "wal_autocheckpoint": [0, 1000],
    }
    with writer.transaction():  # the write lock taken elsewhere: at once, no wait
        with pytest.raises(StorageUnavailable), loop_writer.transaction():
            pass
    loop_writer.close()
    writer.close()
