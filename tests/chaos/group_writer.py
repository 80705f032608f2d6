"""A process that archives items through the vault's group commit until it is killed (for
``tests/integration/test_group_commit_kill.py`` and ``bench/vault.py``'s crash check).

    python -m tests.chaos.group_writer STATE_DIR ROUND [REQUESTERS [TENANTS]]

STATE_DIR is laid out as the daemon's ``state_dir`` for the tenant ``default``, and for the other
TENANTS (comma-separated, as an ISP daemon's ``tenants.d``: their vaults share its database, so
their requests share group commits).

REQUESTERS event-loop tasks (and two threads, as IMAP folder watchers are) each archive one item
after another (``submit``, await the future, then act). For every resolved future it writes
``acted SHA256 SEQ TENANT`` to stdout, flushed, before the next: the "action" a source would
take. An item is never reported before its future resolved, so every reported item must be
durable whenever the process is killed.
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


def acted(receipt: Receipt, tenant: str) -> None:
    with _OUT:
        sys.stdout.write(f"acted {receipt.sha256} {receipt.seq} {tenant}\n")
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
        acted(receipt, vault.tenant)
        note = Record(kind="action", fields={"archived_seq": receipt.seq, "done": "acted"})
        await asyncio.wrap_future(group.submit([note], now=datetime.now(UTC)))


def thread_requester(vault: Vault, tag: str) -> None:
    group = committer(vault)
    for n in range(10**9):
        items = [Archive(raw=raw(tag, n * 3 + k), source_ref=f"{tag}:{n}:{k}") for k in range(3)]
        for receipt in group.put_many(items, now=datetime.now(UTC), witness=False):
            acted(receipt, vault.tenant)


async def main(state: Path, round_: int, requesters: int, tenants: list[str]) -> None:
    # The daemon's layout, so that ``guardmail evidence verify`` reads it: one database, a
    # vault directory per tenant (``daemon/tenant.py``).
    storage = SQLiteStorage(state / DB_FILE)
    vaults = [Vault(vault_dir(state, name), storage, name) for name in tenants]
    for vault in vaults:
        vault.open()
    for k in range(2):
        name = f"r{round_}-thread{k}"
        vault = vaults[k % len(vaults)]
        threading.Thread(target=thread_requester, args=(vault, name), daemon=True).start()
    async with asyncio.TaskGroup() as tasks:
        for k in range(requesters):
            tasks.create_task(requester(vaults[k % len(vaults)], f"r{round_}-task{k}"))


if __name__ == "__main__":
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    names = sys.argv[4].split(",") if len(sys.argv) > 4 else [TENANT]
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), count, names))
