"""The receipt checks' shared workers (guardmail.vault.receipt_workers): a few threads for every
tenant, each tenant's checks in order, fair turns across tenants, the start's catch-up query
off the caller's thread and never queueing a check twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import receipt_workers
from guardmail.vault.keyfetch import StaticResolver
from guardmail.vault.receipt_records import stored
from guardmail.vault.receipt_workers import Workers
from guardmail.vault.receipts import LATE_NOTE, Found, ReceiptChecker
from guardmail.vault.store import Vault
from tests.conftest import wait_for
from tests.unit.test_dkim_receipt import BlockedResolver

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "db.sqlite3")
    yield s
    s.close()


class Turns:
    """A queue that logs its turns; its first turn waits for the test's ``go``."""

    def __init__(self, name: str, log: list[str], workers: Workers, turns: int) -> None:
        self.name, self.log, self.workers, self.left = name, log, workers, turns
        self.go = threading.Event()
        self.started = threading.Event()

    def turn(self) -> None:
        self.started.set()
        self.go.wait(30)
        with self.workers.cond:
            self.left -= 1
        self.log.append(self.name)

    def has_work(self) -> bool:
        return self.left > 0


def test_a_tenants_backlog_waits_its_turn_behind_each_other_tenant() -> None:
    """One thread, tenant A with five turns of work, B with one queued during A's first turn:
    B is served after A's first turn, not after A's whole backlog."""
    workers = Workers(threads=1)
    log: list[str] = []
    a = Turns("a", log, workers, turns=5)
    b = Turns("b", log, workers, turns=1)
    b.go.set()
    with workers.cond:
        workers.ready(a)
    assert a.started.wait(30)
    with workers.cond:
        workers.ready(b)
        workers.ready(a)  # already in a turn: not ringed twice
    a.go.set()
    wait_for(lambda: len(log) == 6, what="every turn")
    assert log == ["a", "b", "a", "a", "a", "a"]
    assert workers.running == 1  # one thread served both


def signed_looking(n: int) -> bytes:
    """A message whose check asks DNS (a DKIM-Signature header), without a valid signature."""
    return (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=sel; h=from; bh=AAAA; b=AAAA\r\n"
        + MESSAGE.replace(b"hi", f"hi {n}".encode())
    )


def test_many_tenants_share_two_threads_and_a_hung_tenant_holds_up_no_other(
    storage: SQLiteStorage,
) -> None:
    workers = Workers()
    hung = BlockedResolver()
    slow = ReceiptChecker(storage=storage, tenant="slow", resolver=hung, workers=workers)
    others = [
        ReceiptChecker(
            storage=storage, tenant=f"t{n}", resolver=StaticResolver({}), workers=workers
        )
        for n in range(20)
    ]
    try:
        assert slow.submit(seq=1, sha256="a" * 64, raw=signed_looking(0))
        assert hung.asked.wait(30)
        for n, c in enumerate(others):
            assert c.submit(seq=1, sha256="b" * 64, raw=signed_looking(n))
        for c in others:  # recorded while the hung tenant's lookup still waits
            assert c.drain(30)
        assert not hung.release.is_set()
        assert workers.running <= receipt_workers.THREADS
    finally:
        hung.release.set()
        for c in [slow, *others]:
            c.close()
    assert all(stored(storage, c.tenant, 1).check is not None for c in [slow, *others])


class Recording:
    """A storage whose reads say which thread made them (the rest is the real storage)."""

    def __init__(self, real: SQLiteStorage) -> None:
        self.real = real
        self.readers: list[str] = []

    @contextmanager
    def read(self) -> Iterator[Any]:
        self.readers.append(threading.current_thread().name)
        with self.real.read() as tx:
            yield tx

    def transaction(self) -> Any:
        return self.real.transaction()


def test_the_catch_up_queries_off_the_callers_thread_and_queues_no_check_twice(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    """A check submitted before the catch-up's turn (its entry also has no check recorded yet)
    is checked once, at receipt; the older entry the crash lost is checked late."""
    vault = Vault(tmp_path / "vault", storage, "t")
    lost, new = (
        vault.put(
            MESSAGE + bytes([48 + n]), source_ref=f"new/{n}", metadata={"channel": "mail"}, now=NOW
        )
        for n in range(2)
    )
    workers = Workers(threads=1)
    hung = BlockedResolver()
    blocker = ReceiptChecker(storage=storage, tenant="x", resolver=hung, workers=workers)
    proxy = Recording(storage)
    checker = ReceiptChecker(
        storage=proxy,  # type: ignore[arg-type]
        tenant="t",
        resolver=StaticResolver({}),
        clock=lambda: NOW,
        load=vault.blobs.get,
        workers=workers,
    )
    recorded: list[int] = []
    real = checker.record_many

    def counted(done: list[Found]) -> None:
        recorded.extend(f.row.seq for f in done)
        real(done)

    checker.record_many = counted  # type: ignore[method-assign]
    try:
        assert blocker.submit(seq=1, sha256="a" * 64, raw=signed_looking(0))
        assert hung.asked.wait(30)  # the one thread is busy: the catch-up waits for its turn
        checker.catch_up()
        assert checker.submit(seq=new.seq, sha256=new.sha256, raw=MESSAGE + b"1")
        assert proxy.readers == []  # not queried by the caller
        hung.release.set()
        assert checker.drain(30)
    finally:
        hung.release.set()
        blocker.close()
        checker.close()
    assert proxy.readers == ["receipts"]
    assert recorded == [lost.seq, new.seq]
    assert checker.caught_up == 1
    late, fresh = (stored(storage, "t", r.seq).check for r in (lost, new))
    assert late is not None and late.note.startswith(LATE_NOTE)
    assert fresh is not None and not fresh.note.startswith(LATE_NOTE)


def test_close_drops_what_it_cannot_finish_in_its_time(storage: SQLiteStorage) -> None:
    workers = Workers(threads=1)
    hung = BlockedResolver()
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=hung, workers=workers)
    try:
        assert checker.submit(seq=1, sha256="a" * 64, raw=signed_looking(0))
        assert hung.asked.wait(30)
        assert checker.submit(seq=2, sha256="a" * 64, raw=signed_looking(1))
        checker.close(timeout=0.01)
        with workers.cond:
            assert not checker.has_work() and workers.held == 0
        assert not checker.submit(seq=3, sha256="a" * 64, raw=MESSAGE)
    finally:
        hung.release.set()
    assert checker.drain(30)
    assert stored(storage, "t", 1).check is not None  # the turn in hand ended by itself
    assert stored(storage, "t", 2).check is None  # dropped: the next start's catch-up has it
