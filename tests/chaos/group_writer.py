"""A process that archives items through the vault's group commit until it is killed (for
``tests/integration/test_group_commit_kill.py`` and ``bench/vault.py``'s crash check).

    python -m tests.chaos.group_writer STATE_DIR ROUND [REQUESTERS]

STATE_DIR is laid out as the daemon's ``state_dir`` for the tenant ``default``.

REQUESTERS event-loop tasks (and two threads, as IMAP folder watchers are) each archive one item
after another (``submit``, await the future, then act). For every resolved future it writes
``acted SHA256 SEQ`` to stdout, flushed, before the next: the "action" a source would take. An
item is never reported before its future resolved, so every reported item must be durable
whenever the process is killed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from guardmail.daemon.tenant import vault_dir
from guardmail.linker import DB_FILE
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.group import committer
from guardmail.vault.store import Archive, Receipt, Record, Vault

TENANT = "default"
_OUT = threading.Lock()


def acted(receipt: Receipt) -> None:
    with _OUT:
        sys.stdout.write(f"acted {receipt.sha256} {receipt.seq}\n")
        sys.stdout.flush()


def raw(tag: str, n: int) -> bytes:
    return (f"From: ex@evil.example\r\nSubject: {tag} {n}\r\n\r\n" + "x" * (n % 700)).encode()


async def requester(vault: Vault, tag: str) -> None:
    group = committer(vault)
    for n in range(10**9):
        item = Archive(raw=raw(tag, n), source_ref=f"{tag}:{n}")
        done = await asyncio.wrap_future(group.submit([item], now=datetime.now(UTC)))
        receipt = done[0]
        assert isinstance(receipt, Receipt)
        acted(receipt)
        note = Record(kind="action", fields={"archived_seq": receipt.seq, "done": "acted"})
        await asyncio.wrap_future(group.submit([note], now=datetime.now(UTC)))


def thread_requester(vault: Vault, tag: str) -> None:
    group = committer(vault)
    for n in range(10**9):
        items = [Archive(raw=raw(tag, n * 3 + k), source_ref=f"{tag}:{n}:{k}") for k in range(3)]
        for receipt in group.put_many(items, now=datetime.now(UTC), witness=False):
            acted(receipt)


async def main(state: Path, round_: int, requesters: int) -> None:
    # The daemon's layout for the default tenant, so that ``guardmail evidence verify`` reads it.
    storage = SQLiteStorage(state / DB_FILE)
    vault = Vault(vault_dir(state, TENANT), storage, TENANT)
    vault.open()
    for k in range(2):
        name = f"r{round_}-thread{k}"
        threading.Thread(target=thread_requester, args=(vault, name), daemon=True).start()
    async with asyncio.TaskGroup() as tasks:
        for k in range(requesters):
            tasks.create_task(requester(vault, f"r{round_}-task{k}"))


if __name__ == "__main__":
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), count))
