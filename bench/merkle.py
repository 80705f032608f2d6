"""Archiving cost with the signed Merkle log beside the plain hash chain, in one run.

Two vaults in one temp directory, each its own SQLite database, archive the same items one
``Vault.put`` at a time (each a commit with its fsyncs), alternating A, B, A, B so that both see
the same disk and load. The plain vault has tree-head signing switched off (``_grow`` a no-op:
the journal as it was before the log). Prints per-item latency p50/p99 and items/s for both,
the ratio, then the time ``evidence verify`` (no blobs) takes over the logged journal.

    python bench/merkle.py [--items N] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from guardmail.storage.base import JournalRow, Transaction
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class PlainVault(Vault):
    """The journal without its log: a hash chain and HEAD only."""

    def _grow(self, tx: Transaction, now: datetime, appended: Sequence[JournalRow] = ()) -> None:
        return None


class TimedVault(Vault):
    """The journal with its log, timing the log's own part of each commit (``_grow``: read the
    new entries back, extend the frontier, sign, store the head)."""

    grow_times: list[float]

    def _grow(self, tx: Transaction, now: datetime, appended: Sequence[JournalRow] = ()) -> None:
        start = time.perf_counter()
        super()._grow(tx, now, appended)
        self.grow_times.append(time.perf_counter() - start)


def item(n: int, tag: str) -> bytes:
    return (
        f"From: offender{n % 7}@stalk.example\r\nTo: jane@home.example\r\n"
        f"Subject: message {n} {tag}\r\nMessage-ID: <{n}.{tag}@stalk.example>\r\n\r\n"
    ).encode() + b"x" * 2000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 200 if args.quick else args.items
    with tempfile.TemporaryDirectory(prefix="gm-bench-merkle-") as tmp:
        root = Path(tmp)
        stores = {name: SQLiteStorage(root / name / "guardmail.sqlite3") for name in ("p", "l")}
        vaults: dict[str, Vault] = {
            "plain chain": PlainVault(root / "p" / "vault" / "jane", stores["p"], "jane"),
            "signed log": TimedVault(root / "l" / "vault" / "jane", stores["l"], "jane"),
        }
        grow = vaults["signed log"].grow_times = []  # type: ignore[attr-defined]
        times: dict[str, list[float]] = {name: [] for name in vaults}
        for i in range(n):
            for name, vault in vaults.items():
                raw = item(i, name)
                start = time.perf_counter()
                vault.put(raw, source_ref=f"new/{i}", metadata={"offender": "X"}, now=NOW)
                times[name].append(time.perf_counter() - start)
        print(f"{n} items archived one commit each, alternating, same disk:")
        for name, t in times.items():
            print(
                f"  {name:12s} p50 {pct(t, 0.5) * 1e3:6.2f} ms  p99 {pct(t, 0.99) * 1e3:6.2f} ms  "
                f"mean {statistics.fmean(t) * 1e3:6.2f} ms  {len(t) / sum(t):7.0f} items/s"
            )
        plain, logged = times["plain chain"], times["signed log"]
        print(
            f"  ratio log/plain: p50 {pct(logged, 0.5) / pct(plain, 0.5):.2f}x  "
            f"p99 {pct(logged, 0.99) / pct(plain, 0.99):.2f}x"
        )
        print(
            f"  the log's own part of a commit: p50 {pct(grow[1:], 0.5) * 1e6:.0f} us  "
            f"p99 {pct(grow[1:], 0.99) * 1e6:.0f} us (the first, which makes the key, "
            f"{grow[0] * 1e3:.1f} ms)"
        )
        log = vaults["signed log"]
        start = time.perf_counter()
        problems = verify_vault(log, blobs=False)
        took = time.perf_counter() - start
        heads = len(log.tree_heads())
        print(f"  verify (no blobs) over {n} entries and {heads} heads: {took:.2f} s, {problems=}")
        for s in stores.values():
            s.close()


if __name__ == "__main__":
    main()
