"""``guardmail import``'s rate on a 10,000-message mbox: items/s and MB/s, beside reading alone.

Three runs on one generated mbox (messages of ~2-3 KB with a few Received lines, one in
``--every`` from the offender), each into a fresh vault, with the engine as ``guardmail import``
runs it (batches of 500 items, one transaction each):

  read      the mbox reader alone (split and hash every message): the floor
  offenders the default import: every message judged, the offender's archived (fsync each)
  all       ``--all``: every message archived

then ``again``: the default import run a second time into the same vault (nothing archived; the
cost of a resumed or repeated import).

    python bench/import_mbox.py [--messages 10000] [--every 10] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.imports.engine import Settings, run_import
from guardmail.imports.files import Mbox
from guardmail.imports.progress import Counts, Progress
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])


def write_mbox(path: Path, count: int, every: int) -> int:
    with path.open("wb") as f:
        for n in range(count):
            sender = "stalker@example.net" if n % every == 0 else f"friend{n % 500}@example.org"
            received = "".join(
                f"Received: from mx{k}.example.org (mx{k}.example.org [192.0.2.{k}])\n"
                f"\tby mail.example.org with ESMTPS id {n:08x}{k}; Mon, 3 Nov 2025 10:00:00 +0000\n"
                for k in range(4)
            )
            body = "".join(
                f"line {k} of message {n}: " + "lorem ipsum " * 6 + "\n" for k in range(20)
            )
            f.write(f"From {sender} Mon Nov  3 10:00:00 2025\n".encode())
            f.write(
                (
                    f"{received}From: Someone <{sender}>\nTo: me@example.org\n"
                    f"Subject: message {n}\nMessage-ID: <{n}@example.org>\n"
                    f"Date: Mon, 3 Nov 2025 10:00:00 +0000\n\n{body}\n"
                ).encode()
            )
    return path.stat().st_size


def run(path: Path, root: Path, *, everything: bool, again: bool = False) -> tuple[Counts, float]:
    storage = SQLiteStorage(root / "db.sqlite3")
    try:
        vault = Vault(root / "vault", storage, "t")
        pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: datetime.now(UTC))
        settings = Settings(tenant="t", account="bench", everything=everything)
        passes = 2 if again else 1
        for _ in range(passes):
            start = time.perf_counter()
            counts = run_import(
                Mbox(path), pipeline=pipeline, settings=settings, progress=Progress(None)
            )
            took = time.perf_counter() - start
        return counts, took
    finally:
        storage.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="1,000 messages")
    args = p.parse_args()
    count = 1_000 if args.quick else args.messages
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        base = Path(tmp)
        path = base / "old.mbox"
        size = write_mbox(path, count, args.every)
        print(f"mbox: {count:,} messages, {size / 1e6:.1f} MB, 1 in {args.every} from the offender")
        print(f"{'run':<10} {'items':>7} {'archived':>9} {'seconds':>8} {'items/s':>9} {'MB/s':>6}")
        start = time.perf_counter()
        n = sum(1 for _ in Mbox(path).items())
        took = time.perf_counter() - start
        print(
            f"{'read':<10} {n:>7,} {0:>9} {took:>8.2f} {n / took:>9,.0f} {size / 1e6 / took:>6.1f}"
        )
        for name, everything, again in (
            ("offenders", False, False),
            ("all", True, False),
            ("again", False, True),
        ):
            root = base / name
            root.mkdir()
            c, took = run(path, root, everything=everything, again=again)
            print(
                f"{name:<10} {c.items:>7,} {c.archived:>9,} {took:>8.2f} "
                f"{c.items / took:>9,.0f} {size / 1e6 / took:>6.1f}"
            )


if __name__ == "__main__":
    main()
