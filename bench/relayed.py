"""The after-queue filter's relayed-copies record and look-up, alone (issue 27, branch aq4).

Beside each other in one run, on the same disk and machine load:

- record: ``RelayedCopies.remember`` awaited by C concurrent senders (as the filter awaits it
  before answering Postfix), with the writer at ``synchronous=FULL`` (an fsync per commit: main)
  and at ``NORMAL`` (``WRITER``: branch aq4, in the thread), and committed on the event loop
  (``LOOP_WRITER``: branch aqcpu, the daemon's way since). ms per record p50/p99, records/s, and
  the process's CPU per record (the thread hop's included).
- look-up: the read before each message, in a thread (``asyncio.to_thread(get)``: main) and on
  the event loop (``look_up`` with a ``READER`` connection: this branch). us per look-up, wall
  and the process's CPU, over a table of N records.

    python bench/relayed.py [--quick]

Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from guardmail.channels.smtp.relayed import (  # noqa: E402
    FILE,
    LOOP_WRITER,
    READER,
    WRITER,
    RelayedCopies,
)
from guardmail.storage.sqlite import SQLiteStorage  # noqa: E402


def _open(path: Path, writer: dict[str, str], *, on_loop: bool = False) -> RelayedCopies:
    own = (SQLiteStorage(path, **writer), SQLiteStorage(path, **READER))  # type: ignore[arg-type]
    loop_writer = SQLiteStorage(path, **LOOP_WRITER) if on_loop else None
    return RelayedCopies(
        own[0],
        "default",
        reader=own[1],
        reader_never_waits=True,
        loop_writer=loop_writer,
        owned=(*own, loop_writer) if loop_writer else own,
    )


def _key(i: int) -> tuple[str, str]:
    return (f"{i:010X}", hashlib.sha256(str(i).encode()).hexdigest())


async def _records(copies: RelayedCopies, count: int, senders: int) -> list[float]:
    took: list[float] = []
    numbers = iter(range(count))

    async def sender() -> None:
        for i in numbers:
            began = time.perf_counter()
            await copies.remember(_key(i), [f"rcpt:u{i}@example.test"])
            took.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(sender() for _ in range(senders)))
    return took


def record(count: int, senders: int) -> None:
    ways = (
        ("FULL (main)", {"synchronous": "FULL"}, False),
        ("NORMAL (aq4)", WRITER, False),
        ("loop (aqcpu)", WRITER, True),
    )
    for name, writer, on_loop in ways:
        with tempfile.TemporaryDirectory(prefix="gm-relayed-") as tmp:
            copies = _open(Path(tmp) / FILE, writer, on_loop=on_loop)
            began, cpu = time.perf_counter(), time.process_time()
            took = sorted(asyncio.run(_records(copies, count, senders)))
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu
            copies.close()
        print(
            f"record  {name:13} {senders:2} senders: {count / wall:7.0f} records/s, "
            f"p50 {statistics.median(took):6.2f} ms, p99 {took[int(len(took) * 0.99)]:6.2f} ms, "
            f"{cpu / count * 1e6:6.0f} us CPU a record"
        )


async def _look_ups(copies: RelayedCopies, count: int, rows: int, on_loop: bool) -> float:
    for i in range(count):
        key = _key(i * 7919 % rows)
        if on_loop:
            found = await copies.look_up(key)
        else:
            found = await asyncio.to_thread(copies.get, key)
        assert found
    return 0.0


def look_up(count: int, rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="gm-relayed-") as tmp:
        copies = _open(Path(tmp) / FILE, WRITER)
        for start in range(0, rows, 1000):
            copies.add([(_key(i), [f"rcpt:u{i}@example.test"]) for i in range(start, start + 1000)])
        for name, on_loop in (("thread (main)", False), ("loop (aq4)", True)):
            wall, cpu = time.perf_counter(), time.process_time()
            asyncio.run(_look_ups(copies, count, rows, on_loop))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"look-up {name:13} {rows:,} rows: {wall / count * 1e6:7.1f} us wall, "
                f"{cpu / count * 1e6:7.1f} us CPU a look-up"
            )
        copies.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 200 if args.quick else 2000
    for senders in (1, 4, 16):
        record(count, senders)
    look_up(count * 5, 10_000 if args.quick else 100_000)


if __name__ == "__main__":
    main()
