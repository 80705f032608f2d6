"""Group commit: concurrent requests to one vault share their fsyncs and their transaction.

Every channel of a tenant (event-loop sources and IMAP folder threads alike) hands its archive
and journal requests to the tenant's one ``GroupCommitter``; while a group is being made durable
the next requests queue up, and the committer takes all of them as the next group.

Contracts:
- ``committer(vault)`` is the one committer of a ``Vault`` object. Tenants have separate vaults,
  so a group never mixes tenants.
- ``submit`` returns at once a ``concurrent.futures.Future`` that resolves with the request's
  results (what ``Vault.commit`` returns for its entries) only when they are durable: every blob
  of the group written to its own file and made durable with its name (each file and directory
  fsync'd once per group, or for many new blobs two syncfs: ``guardmail.vault.blobs``),
  and every entry of the group committed in one SQLite transaction with one signed tree head.
  Await it in the event loop with ``asyncio.wrap_future``; a thread blocks on ``result()``
  (``commit``). Nothing may act on an item before its future resolved.
- Order: requests are committed in the order ``submit`` was called, their entries in their own
  order; the journal's hash chain and the Merkle leaves follow that order.
- A group succeeds or fails as a whole: on failure every request of it gets the same
  ``VaultUnavailable`` (any other exception, a bug, likewise), and nothing of the group is
  journaled; each request is retried by its source (its blobs are found in place, same name,
  same bytes). No request is ever told it succeeded unless its own entries committed.
- A group of ``WRITER_MIN`` blobs or more has them written by the committer thread's blob
  writer child (``guardmail.vault.blobwriter``, the same ``BlobStore.put_many`` run there, so
  the same durability); that child dying or failing fails the group as a whole, as above, and
  the next group starts another. The child is closed when the thread ends.
- No request waits for ever: a committer thread stopped by what it does not catch (SystemExit,
  a bug) fails every request it holds or has queued with ``VaultUnavailable`` before it ends.
- The HEAD witness is written after a group's commit if a request of the group asked for it:
  always when no other request waits, else at most every ``WITNESS_SECONDS`` (it may lag the
  journal, never lead it: ``guardmail.vault.store``; the signed tree heads cover every group).
  A request with ``wait_witness=False`` (the milter, whose client waits for its answer) is told
  its entries are durable as soon as they are committed; when no request of the group waits
  for it, the witness is written after their futures resolved (a failure to write it is
  logged, never theirs: their entries are committed). A group's journal time is the latest
  ``now`` of its requests.
- A request cancelled before its group is taken (its awaiting task was cancelled) is dropped,
  never committed: nothing acts on it, and its source sees it again.
- The committer thread starts when a request arrives and none runs, and ends when the queue has
  stayed empty for ``LINGER_SECONDS``: an idle tenant holds no thread. A group holds at most
  ``MAX_ENTRIES`` entries and about ``MAX_BYTES`` of blobs (a larger request is a group alone).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import JournalRow
from guardmail.vault.blobwriter import BlobWriter
from guardmail.vault.store import Archive, Receipt, Record, Vault

MAX_ENTRIES = 2000
MAX_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 0.2  # an idle committer thread waits this long for the next request
WITNESS_SECONDS = 0.5  # under a flood, the HEAD witness is written at most this often
# From this many blobs in a group, its files are written by the committer thread's blob writer
# child (guardmail.vault.blobwriter) rather than by the thread itself, beside the event loop.
WRITER_MIN = 8

Done = list[Receipt | JournalRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Request:
    entries: Sequence[Archive | Record]
    now: datetime
    witness: bool
    wait_witness: bool
    future: Future[Done]

    @property
    def size(self) -> int:
        return sum(len(e.raw) for e in self.entries if isinstance(e, Archive))


class GroupCommitter:
    """The queue of one vault's requests and the thread that commits them in groups."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._running = False
        self.groups = 0  # groups committed or failed (for benches and tests)
        self.writers = 0  # blob writer children started by ended threads (benches and tests)
        self._witnessed = 0.0  # monotonic time of the last HEAD witness written

    def submit(
        self,
        entries: Sequence[Archive | Record],
        *,
        now: datetime,
        witness: bool = True,
        wait_witness: bool = True,
    ) -> Future[Done]:
        """Queue the entries for the next group; see the module contract."""
        future: Future[Done] = Future()
        if not entries:
            future.set_result([])
            return future
        request = _Request(
            entries=list(entries),
            now=now,
            witness=witness,
            wait_witness=wait_witness,
            future=future,
        )
        with self._lock:
            self._queue.append(request)
            if self._running:
                self._ready.notify()
                return future
            self._running = True
        threading.Thread(
            target=self._run, name=f"vault-group:{self.vault.tenant}", daemon=False
        ).start()
        return future

    def commit(
        self, entries: Sequence[Archive | Record], *, now: datetime, witness: bool = True
    ) -> Done:
        """``submit`` and wait (from a thread, never the event loop). VaultUnavailable if the
        group failed."""
        return self.submit(entries, now=now, witness=witness).result()

    def put_many(
        self, archives: Sequence[Archive], *, now: datetime, witness: bool = True
    ) -> list[Receipt]:
        """``Vault.put_many`` through the group (blocking, from a thread)."""
        return [
            r for r in self.commit(archives, now=now, witness=witness) if isinstance(r, Receipt)
        ]

    def record_many(self, records: Sequence[Record], *, now: datetime) -> list[JournalRow]:
        """``Vault.record_many`` through the group (blocking, from a thread)."""
        return [r for r in self.commit(records, now=now) if isinstance(r, JournalRow)]

    def _take(self) -> list[_Request]:
        """The next group, oldest first; empty (and the thread to end) if nothing waits."""
        with self._lock:
            if not self._queue:
                self._ready.wait(LINGER_SECONDS)  # a thread per request would cost more
            group: list[_Request] = []
            entries = size = 0
            while self._queue:
                nxt = self._queue[0]
                if group and (
                    entries + len(nxt.entries) > MAX_ENTRIES or size + nxt.size > MAX_BYTES
                ):
                    break
                self._queue.popleft()
                # A request its caller gave up on (a cancelled task) is not committed; one that
                # is running can no longer be cancelled, so its result always reaches it.
                if not nxt.future.set_running_or_notify_cancel():
                    continue
                group.append(nxt)
                entries += len(nxt.entries)
                size += nxt.size
            if not group:
                self._running = False
            return group

    def _run(self) -> None:
        group: list[_Request] = []
        writer = BlobWriter()  # its child starts at this thread's first large group
        try:
            while group := self._take():
                self._commit(group, writer)
        except BaseException as exc:
            # Only something ``_commit`` does not catch gets here (SystemExit, a bug in
            # ``_take``): the thread is going, and the next submit starts another. No request it
            # holds or that waits behind it may wait for ever (a thread blocks on ``result()``
            # without a timeout): each fails as the vault being unavailable, and its source
            # retries it. A group stopped inside ``Vault.commit`` journaled nothing (its
            # transaction rolls back); one stopped just after the commit is found by the retry
            # (same bytes, same scope: the first receipt, ``duplicate=True``).
            with self._lock:
                self._running = False
                waiting = list(self._queue)
                self._queue.clear()
            failure = VaultUnavailable(
                f"the group committer of vault {self.vault.root} stopped "
                f"({type(exc).__name__}: {exc}) before this request was answered"
            )
            for r in group:  # taken: running (no longer cancellable), perhaps answered
                if not r.future.done():
                    r.future.set_exception(failure)
            for r in waiting:  # one its caller cancelled stays cancelled
                if r.future.set_running_or_notify_cancel():
                    r.future.set_exception(failure)
            raise
        finally:
            writer.close()
            self.writers += writer.started

    def _commit(self, group: list[_Request], writer: BlobWriter) -> None:
        entries = [e for r in group for e in r.entries]
        # A small group writes its blobs in this thread: a child costs a pipe round trip and,
        # the first time, its start; a large one hands them to the child (blobwriter.py).
        blobs = sum(isinstance(e, Archive) for e in entries)
        witness = any(r.witness for r in group)
        with self._lock:
            # Under a flood the HEAD witness (two more fsyncs) is written at most every
            # WITNESS_SECONDS; it is always written when nothing more waits.
            if witness and self._queue and time.monotonic() - self._witnessed < WITNESS_SECONDS:
                witness = False
        # Nobody waits for the witness: it is written once their futures resolved.
        later = witness and not any(r.witness and r.wait_witness for r in group)
        try:
            done = self.vault.commit(
                entries,
                now=max(r.now for r in group),
                witness=witness and not later,
                point="vault.group",
                writer=writer if blobs >= WRITER_MIN else None,
            )
            if witness and not later:
                self._witnessed = time.monotonic()
        except Exception as exc:  # VaultUnavailable, or a bug: every request of it must hear it
            self.groups += 1
            for r in group:
                r.future.set_exception(exc)
            return
        self.groups += 1
        start = 0
        for r in group:
            r.future.set_result(done[start : start + len(r.entries)])
            start += len(r.entries)
        if later:
            try:
                self.vault.witness()  # the journal's last entry: this group's, committed above
                self._witnessed = time.monotonic()
            except VaultUnavailable as exc:  # lags until the next group's witness
                event("vault.witness_failed", level=logging.ERROR, error=str(exc))


_COMMITTERS: weakref.WeakKeyDictionary[Vault, GroupCommitter] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def committer(vault: Vault) -> GroupCommitter:
    """The one GroupCommitter of ``vault`` (made at the first call)."""
    with _REGISTRY_LOCK:
        found = _COMMITTERS.get(vault)
        if found is None:
            found = _COMMITTERS[vault] = GroupCommitter(vault)
        return found
