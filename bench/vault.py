"""The vault's group commit beside one commit per request, in one run (issue 28).

N requesters in one event loop each archive items one after another as a source does: the
archive request, then (once it is durable) the ``action`` entry, as ``Pipeline`` does. Two ways:
- ``single``: today's path before the group commit: each request is its own ``Vault.put_many``
  / ``record_many`` in a thread (``asyncio.to_thread``): its own blob fsync, directory fsync,
  SQLite commit (synchronous=FULL) and signed tree head, the HEAD witness after the action;
- ``group``: the same requests through ``guardmail.vault.group``: queued, committed together,
  each vault by a committer of its own (before issue 28's shared committer: one per vault);
- ``shared``: with ``--tenants K``: the requesters spread over K vaults on one SQLite database
  (an ISP daemon's tenants), through ``committer(vault)``: every vault's requests in one group.
Each (way, N) gets fresh vaults in the same temp directory (same disk). Prints items/s (an item
is archived and its action journaled), the archive request's latency p50/p99 (submit to
durable), the number of groups (and of vault parts in them), and whether ``evidence verify``
passes over every vault.

    python bench/vault.py [--items N] [--requesters 1,8,64,256] [--tenants K] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardmail.storage.sqlite import SQLiteStorage  # noqa: E402
from guardmail.vault.group import GroupCommitter, committer  # noqa: E402
from guardmail.vault.store import Archive, Receipt, Record, Vault  # noqa: E402
from guardmail.vault.verify import verify_vault  # noqa: E402


def item(who: int, n: int) -> Archive:
    raw = f"<message from='ex@evil.example/{who}' id='{n}'><body>{'x' * 200}</body></message>"
    return Archive(raw=raw.encode(), source_ref=f"xmpp:bench:{who}:{n}")


def action(receipt: Receipt) -> Record:
    fields = {"archived_seq": receipt.seq, "action": "block", "done": "dropped"}
    return Record(kind="action", fields=fields, sha256=receipt.sha256)


async def single(vault: Vault, who: int, count: int, lat: list[float]) -> None:
    for n in range(count):
        began = time.perf_counter()
        now = datetime.now(UTC)
        (receipt,) = await asyncio.to_thread(vault.put_many, [item(who, n)], now=now, witness=False)
        lat.append(time.perf_counter() - began)
        await asyncio.to_thread(vault.record_many, [action(receipt)], now=now)


async def grouped(group: GroupCommitter, who: int, count: int, lat: list[float]) -> None:
    for n in range(count):
        began = time.perf_counter()
        now = datetime.now(UTC)
        done = await asyncio.wrap_future(group.submit([item(who, n)], now=now, witness=False))
        lat.append(time.perf_counter() - began)
        receipt = done[0]
        assert isinstance(receipt, Receipt)
        await asyncio.wrap_future(group.submit([action(receipt)], now=now))


async def measure(root: Path, way: str, requesters: int, items: int, tenants: int) -> str:
    storage = SQLiteStorage(root / f"{way}-{requesters}.db")
    vaults = [
        Vault(root / f"{way}-{requesters}" / f"t{t}", storage, f"t{t}") for t in range(tenants)
    ]
    for vault in vaults:
        vault.seal(now=datetime.now(UTC))  # the key made outside the timing
    groups = [committer(v) if way == "shared" else GroupCommitter(v) for v in vaults]
    each = max(1, items // requesters)
    lat: list[float] = []
    began = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for who in range(requesters):
            if way == "single":
                tasks.create_task(single(vaults[who % tenants], who, each, lat))
            else:
                tasks.create_task(grouped(groups[who % tenants], who, each, lat))
    seconds = time.perf_counter() - began
    total = each * requesters
    assert sum(len(v.rows(kind="archived")) for v in vaults) == total
    good = all(verify_vault(v, blobs=False) == [] for v in vaults)
    ok = "verify OK" if good else "verify FAILED"
    if way == "single":
        commits, parts = 2 * total, 2 * total
    else:
        shared = {id(g.shared): g.shared for g in groups}.values()
        commits = sum(s.groups for s in shared)
        parts = sum(s.vaults for s in shared)
    storage.close()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return (
        f"{way:6} N={requesters:<4} K={tenants:<3} {total:6} items {total / seconds:8.0f} items/s  "
        f"archive p50 {q[49] * 1000:6.2f} ms p99 {q[98] * 1000:7.2f} ms  "
        f"{commits:6} commits ({parts} vault parts)  {ok}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4000, help="items per (way, N)")
    parser.add_argument("--requesters", default="1,8,64,256")
    parser.add_argument(
        "--tenants", type=int, default=1, help="vaults on one database (K > 1: also shared)"
    )
    parser.add_argument("--quick", action="store_true", help="500 items, N 1 and 64")
    args = parser.parse_args()
    items, counts = args.items, [int(n) for n in args.requesters.split(",")]
    if args.quick:
        items, counts = 500, [1, 64]
    with tempfile.TemporaryDirectory(prefix="gm-bench-vault-") as tmp:
        for n in counts:
            ways = ("single", "group", "shared") if args.tenants > 1 else ("single", "group")
            for way in ways:
                print(asyncio.run(measure(Path(tmp), way, n, items, args.tenants)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
