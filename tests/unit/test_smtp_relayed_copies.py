"""What the SMTP filter remembers across a crash, so that Postfix retrying a message whose reply a
crash cut off gets no copy delivered twice and no action taken twice: the copies the next hop
took (``RelayedCopies``) and the action a tenant already took (``Vault.acted``)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guardmail.channels.smtp.relayed import FILE, KEEP, RelayedCopies
from guardmail.storage.base import StorageClosed, StorageUnavailable
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEY = ("4F1A2B3C4D", hashlib.sha256(b"message").hexdigest())


def test_copies_are_remembered_across_a_reopen_per_queue_id_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "guardmail.sqlite3"
    storage = SQLiteStorage(path)
    RelayedCopies(storage, "default", clock=lambda: NOW).add([(KEY, ["rcpt:a@x.test"])])
    RelayedCopies(storage, "default", clock=lambda: NOW).add([(KEY, ["quarantine:q@x.test"])])
    storage.close()  # a crash after the commit: nothing in memory survives

    reopened = SQLiteStorage(path)
    copies = RelayedCopies(reopened, "default")
    assert copies.get(KEY) == {"rcpt:a@x.test", "quarantine:q@x.test"}
    assert copies.get((KEY[0], hashlib.sha256(b"other bytes").hexdigest())) == set()
    assert copies.get(("5E6F7A8B9C", KEY[1])) == set()
    assert RelayedCopies(reopened, "other").get(KEY) == set()  # rows are keyed by tenant
    assert copies.get(None) == set()
    asyncio.run(copies.remember(None, ["rcpt:a@x.test"]))  # no queue ID: nothing to remember
    copies.close()
    reopened.close()


def test_copies_older_than_a_queued_message_can_live_are_forgotten(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    old = ("0A0B0C0D0E", KEY[1])
    RelayedCopies(storage, "default", clock=lambda: NOW).add([(old, ["rcpt:a@x.test"])])
    later = NOW + KEEP + timedelta(seconds=1)
    RelayedCopies(storage, "default", clock=lambda: later).add([(KEY, ["rcpt:a@x.test"])])
    copies = RelayedCopies(storage, "default")
    assert copies.get(old) == set()
    assert copies.get(KEY) == {"rcpt:a@x.test"}
    storage.close()


def test_a_database_that_cannot_take_the_record_raises_storage_unavailable(
    tmp_path: Path,
) -> None:
    storage = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    storage._conn.execute("DROP TABLE relayed")
    storage._conn.execute("CREATE TABLE relayed (x)")  # damaged: the insert fails
    copies = RelayedCopies(storage, "default")

    async def both() -> list[BaseException | None]:
        calls = [copies.remember(KEY, ["rcpt:a@x.test"]), copies.remember(KEY, ["rcpt:b@x.test"])]
        return await asyncio.gather(*calls, return_exceptions=True)

    assert [type(e) for e in asyncio.run(both())] == [StorageUnavailable, StorageUnavailable]
    copies.close()
    storage.close()


def test_records_made_meanwhile_are_committed_together_and_all_awaited(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    copies = RelayedCopies(storage, "default")
    commits: list[int] = []
    add = copies.add

    def counted(records: Sequence[tuple[tuple[str, str], Collection[str]]]) -> None:
        commits.append(len(records))
        add(records)

    copies.add = counted  # type: ignore[method-assign]
    keys = [(f"{n:010X}", KEY[1]) for n in range(20)]

    async def burst() -> None:
        await asyncio.gather(
            *(copies.remember(k, [f"rcpt:{n}@x.test"]) for n, k in enumerate(keys))
        )

    asyncio.run(burst())
    assert [copies.get(k) for k in keys] == [{f"rcpt:{n}@x.test"} for n in range(len(keys))]
    assert sum(commits) == len(keys) and len(commits) < len(keys), commits
    copies.close()
    storage.close()


def test_acted_names_the_action_journaled_for_the_same_bytes_in_the_same_scope(
    tmp_path: Path,
) -> None:
    storage = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    vault = Vault(tmp_path / "vault" / "jane", storage, "jane")
    raw = b"From: ex@bad.example\r\n\r\nI see you.\r\n"
    sha = hashlib.sha256(raw).hexdigest()
    assert vault.acted(sha, "smtp:4F1A2B3C4D") is None  # never archived
    receipt = vault.put(
        raw, source_ref="smtp:4F1A2B3C4D", metadata={}, now=NOW, scope="smtp:4F1A2B3C4D"
    )
    assert vault.acted(sha, "smtp:4F1A2B3C4D") is None  # archived, not acted on yet
    vault.record(
        "action",
        {"archived_seq": receipt.seq, "action": "quarantine", "done": "delivered"},
        now=NOW,
        sha256=sha,
        source_ref="smtp:4F1A2B3C4D",
    )
    assert vault.acted(sha, "smtp:4F1A2B3C4D") == "quarantine"
    assert vault.acted(sha, "smtp:5E6F7A8B9C") is None  # another queued message, same bytes
    storage.close()


def test_a_record_is_seen_at_once_by_the_reader_connection(tmp_path: Path) -> None:
    path = tmp_path / FILE
    writer, reader = SQLiteStorage(path), SQLiteStorage(path)
    copies = RelayedCopies(writer, "default", reader=reader, owned=(writer, reader))
    assert copies.get(KEY) == set()  # the reader's snapshot ends with its read
    asyncio.run(copies.remember(KEY, ["rcpt:a@x.test"]))
    assert copies.get(KEY) == {"rcpt:a@x.test"}  # committed before remember returned
    with writer.transaction() as tx, ThreadPoolExecutor(1) as other:
        # A commit in progress (the writer's lock held, a row not committed yet) does not hold
        # up a look-up: it reads the last committed state through the reader.
        tx.add_relayed("default", *KEY, ["rcpt:b@x.test"], NOW.isoformat())
        assert other.submit(copies.get, KEY).result(timeout=30) == {"rcpt:a@x.test"}
    assert copies.get(KEY) == {"rcpt:a@x.test", "rcpt:b@x.test"}
    copies.close()
    for storage in (writer, reader):  # owned: closed with it
        with pytest.raises(StorageClosed), storage.read():
            pass


def test_records_an_older_guardmail_kept_in_the_daemons_database_are_adopted(
    tmp_path: Path,
) -> None:
    legacy = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    other = ("5E6F7A8B9C", KEY[1])
    RelayedCopies(legacy, "default", clock=lambda: NOW).add(
        [(KEY, ["rcpt:a@x.test", "quarantine:q@x.test"]), (other, ["rcpt:b@x.test"])]
    )
    RelayedCopies(legacy, "bob", clock=lambda: NOW).add([(KEY, ["rcpt:c@x.test"])])
    own = SQLiteStorage(tmp_path / FILE)
    copies = RelayedCopies(own, "default", clock=lambda: NOW)

    assert copies.adopt(legacy) == 3
    assert copies.get(KEY) == {"rcpt:a@x.test", "quarantine:q@x.test"}
    assert copies.get(other) == {"rcpt:b@x.test"}
    with own.read() as tx:  # their time is kept: they are forgotten when they would have been
        assert {at for *_, at in tx.all_relayed("default")} == {NOW.isoformat()}
    assert RelayedCopies(legacy, "default").get(KEY) == set()  # moved, not copied
    assert RelayedCopies(legacy, "bob").get(KEY) == {"rcpt:c@x.test"}  # another tenant's stay
    assert copies.adopt(legacy) == 0  # the next start: nothing left to move
    assert copies.get(KEY) == {"rcpt:a@x.test", "quarantine:q@x.test"}
    copies.close()
    own.close()
    legacy.close()
