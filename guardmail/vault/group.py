"""Group commit: concurrent requests to the vaults of one storage share their fsyncs and their
transaction.

Every channel of every tenant whose vault is on a storage (event-loop sources and IMAP folder
threads alike; an ISP daemon's tenants all share one SQLite database, ``daemon/tenant.py``) hands
its archive and journal requests to that storage's one ``SharedCommitter``; while a group is
being made durable the next requests queue up, and the committer takes them as the next group.
One SQLite transaction at a time is all the storage allows: before this, each tenant's group
paid its own FULL commit, one after another, behind the storage's lock (issue 28).

Contracts:
- ``committer(vault)`` is the one committer of a ``Vault`` object (a ``GroupCommitter``); the
  committers of the vaults on one storage object share its ``SharedCommitter``.
  ``GroupCommitter(vault)`` makes a committer of its own (tests, benches).
- ``submit`` returns at once a ``concurrent.futures.Future`` that resolves with the request's
  results (what ``Vault.commit`` returns for its entries) only when they are durable: every blob
  of the group written to its own file in its own tenant's vault and made durable with its name
  (each file and directory fsync'd once per group, or for many new blobs two syncfs:
  ``guardmail.vault.blobs``; the vaults of a group write theirs at once, in threads, so that
  their fsyncs join the same file-system commits), and every entry of the group committed in
  one SQLite transaction, each tenant's entries on its own hash chain with its own signed tree
  head. Await it in the event loop with ``asyncio.wrap_future``; a thread blocks on
  ``result()`` (``commit``). Nothing may act on an item before its future resolved.
- Order: a vault's requests are committed in the order ``submit`` was called, their entries in
  their own order; its journal's hash chain and Merkle leaves follow that order. A group takes
  one request of each waiting vault in turn, so that one tenant's flood holds another tenant's
  request back by one group at most, never behind its whole queue.
- A vault's part of a group succeeds or fails as a whole, and only its own requests hear it:
  on failure every request of that vault in the group gets the same ``VaultUnavailable`` (any
  other exception, a bug, likewise), and nothing of that part is journaled; each request is
  retried by its source (its blobs are found in place, same name, same bytes). A vault whose
  blobs cannot be written (its directory unwritable, a file where its blob directory should be,
  its own mount full), or whose HEAD check, key or entries fail inside the transaction, is left
  out (the transaction is made again without it) and the other vaults' parts commit. A failure
  of the storage itself fails every part. No request is ever told it succeeded unless its own
  entries committed.
- A vault with ``WRITER_MIN`` blobs or more in a group has them written by the committer
  thread's blob writer child (``guardmail.vault.blobwriter``, the same ``BlobStore.put_many``
  run there, so the same durability); that child dying or failing fails that vault's part, as
  above, and the next group starts another. The child is closed when the thread ends.
- No request waits for ever: a committer thread stopped by what it does not catch (SystemExit,
  a bug) fails every request it holds or has queued with ``VaultUnavailable`` before it ends.
- A vault's HEAD witness is written after a group's commit if a request of that vault in the
  group asked for it: always when no other request of that vault waits, else at most every
  ``WITNESS_SECONDS`` (it may lag the journal, never lead it: ``guardmail.vault.store``; the
  signed tree heads cover every group). A request with ``wait_witness=False`` (the milter, whose
  client waits for its answer) is told its entries are durable as soon as they are committed;
  when no request of the vault waits for it, the witness is written after their futures
  resolved (a failure to write it is logged, never theirs: their entries are committed). A
  group's journal time is the latest ``now`` of its requests. A mixed group's HEADs are
  written by the thread's finisher while the next group is taken, in commit order.
- A request cancelled before its group is taken (its awaiting task was cancelled) is dropped,
  never committed: nothing acts on it, and its source sees it again.
- The committer thread starts when a request arrives and none runs, and ends when the queue has
  stayed empty for ``LINGER_SECONDS``: an idle storage holds no thread. A group holds at most
  ``MAX_ENTRIES`` entries and about ``MAX_BYTES`` of blobs (a larger request is a group alone).
- A group of one vault (every group of a single-tenant daemon) is ``Vault.commit``, as before.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import JournalRow
from guardmail.vault.blobwriter import BlobWriter
from guardmail.vault.group_parts import (
    Done,
    Part,
    Request,
    commit_one,
    commit_parts,
    each,
    write_heads,
)
from guardmail.vault.store import Archive, Receipt, Record, Vault

MAX_ENTRIES = 2000
MAX_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 0.2  # an idle committer thread waits this long for the next request
WITNESS_SECONDS = 0.5  # under a flood, a vault's HEAD witness is written at most this often
# From this many blobs of one vault in a group, its files are written by the committer thread's
# blob writer child (guardmail.vault.blobwriter) rather than by a thread, beside the event loop.
WRITER_MIN = 8

__all__ = ["Done", "GroupCommitter", "SharedCommitter", "committer"]


class SharedCommitter:
    """The queues of every vault on one storage and the thread that commits them in groups."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        # The requests waiting, per vault, and the vaults' turns: a group takes one request of
        # each in turn, so that one tenant's flood holds another's request back one group at
        # most (MAX_ENTRIES, MAX_BYTES), never behind its whole queue.
        self._queues: dict[Vault, deque[Request]] = {}
        self._turns: deque[Vault] = deque()
        self._running = False
        self.groups = 0  # groups committed or failed (for benches and tests)
        self.writers = 0  # blob writer children started by ended threads (benches and tests)
        self.vaults = 0  # of the groups, the vault parts committed (benches and tests)
        # monotonic time of each vault's last HEAD witness written
        self._witnessed: weakref.WeakKeyDictionary[Vault, float] = weakref.WeakKeyDictionary()
        # A mixed group's HEAD witnesses and the answers that wait for them, being written by
        # the thread's finisher while the next group is taken and written
        self._finishing: Future[None] | None = None

    def submit(
        self,
        vault: Vault,
        entries: Sequence[Archive | Record],
        *,
        now: datetime,
        witness: bool = True,
        wait_witness: bool = True,
    ) -> Future[Done]:
        """Queue ``vault``'s entries for the next group; see the module contract."""
        future: Future[Done] = Future()
        if not entries:
            future.set_result([])
            return future
        request = Request(
            vault=vault,
            entries=list(entries),
            now=now,
            witness=witness,
            wait_witness=wait_witness,
            future=future,
        )
        with self._lock:
            queue = self._queues.get(vault)
            if queue is None:
                queue = self._queues[vault] = deque()
                self._turns.append(vault)
            queue.append(request)
            if self._running:
                self._ready.notify()
                return future
            self._running = True
        threading.Thread(target=self._run, name=f"vault-group:{self.name}", daemon=False).start()
        return future

    def _take(self) -> list[Request]:
        """The next group, each vault's requests oldest first; empty (and the thread to end)
        if nothing waits."""
        with self._lock:
            if not self._turns:
                self._ready.wait(LINGER_SECONDS)  # a thread per request would cost more
            group: list[Request] = []
            entries = size = 0
            while self._turns:
                vault = self._turns[0]
                queue = self._queues[vault]
                nxt = queue[0]
                if group and (
                    entries + len(nxt.entries) > MAX_ENTRIES or size + nxt.size > MAX_BYTES
                ):
                    break  # this vault goes first in the next group
                queue.popleft()
                if queue:
                    self._turns.rotate(-1)
                else:
                    del self._queues[vault]
                    self._turns.popleft()
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
        group: list[Request] = []
        writer = BlobWriter()  # its child starts at this thread's first large group
        finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vault-heads:{self.name}")
        try:
            while True:
                if not self._turns:
                    # Before the thread may end: the last group's HEADs written, its answers out.
                    self._settle()
                if not (group := self._take()):
                    break
                self._commit(group, writer, finisher)
        except BaseException as exc:
            # Only something ``_commit`` does not catch gets here (SystemExit, a bug in
            # ``_take``): the thread is going, and the next submit starts another. No request it
            # holds or that waits behind it may wait for ever (a thread blocks on ``result()``
            # without a timeout): each fails as the vault being unavailable, and its source
            # retries it. A group stopped inside its transaction journaled nothing (it rolls
            # back); one stopped just after the commit is found by the retry (same bytes, same
            # scope: the first receipt, ``duplicate=True``).
            with self._lock:
                self._running = False
                waiting = [r for queue in self._queues.values() for r in queue]
                self._queues.clear()
                self._turns.clear()

            why = f"({type(exc).__name__}: {exc}) before this request was answered"

            def failure(r: Request) -> VaultUnavailable:
                return VaultUnavailable(
                    f"the group committer of vault {r.vault.root} stopped {why}"
                )

            for r in group:  # taken: running (no longer cancellable), perhaps answered
                if not r.future.done():
                    r.future.set_exception(failure(r))
            for r in waiting:  # one its caller cancelled stays cancelled
                if r.future.set_running_or_notify_cancel():
                    r.future.set_exception(failure(r))
            raise
        finally:
            finisher.shutdown(wait=True)  # its job answers its own requests, whatever happens
            writer.close()
            self.writers += writer.started

    def _settle(self) -> None:
        """Wait for the finisher's job (the group before), which must end before another HEAD
        of its vaults is written: HEADs are written in commit order."""
        if self._finishing is not None:
            finishing, self._finishing = self._finishing, None
            finishing.result()  # a bug there (it answered its requests) ends this thread too

    def _commit(
        self, group: list[Request], writer: BlobWriter, finisher: ThreadPoolExecutor
    ) -> None:
        parts: dict[Vault, Part] = {}
        for r in group:
            part = parts.get(r.vault)
            if part is None:
                part = parts[r.vault] = Part(vault=r.vault, requests=[])
            part.requests.append(r)
        with self._lock:
            now = time.monotonic()
            for part in parts.values():
                witness = any(r.witness for r in part.requests)
                # Under a flood a vault's HEAD witness (two more fsyncs) is written at most
                # every WITNESS_SECONDS; it is always written when nothing more of it waits.
                if (
                    witness
                    and part.vault in self._queues
                    and now - self._witnessed.get(part.vault, 0.0) < WITNESS_SECONDS
                ):
                    witness = False
                # Nobody waits for the witness: it is written once their futures resolved.
                part.later = witness and not any(
                    r.witness and r.wait_witness for r in part.requests
                )
                part.witness = witness and not part.later
        when = max(r.now for r in group)
        listed = list(parts.values())
        self.groups += 1
        self.vaults += len(parts)
        if len(parts) == 1:
            self._settle()
            commit_one(listed[0], when, writer, writer_min=WRITER_MIN)  # and its HEAD
            self._answer(listed)
            self._later(listed, bounded=False)
            return
        commit_parts(listed, when, writer, writer_min=WRITER_MIN)
        # Whoever waits for no HEAD is durable and answered now; the HEADs (two fsyncs each)
        # are written by the finisher while this thread takes the next group and writes its
        # blobs, so that a mixed group's fsyncs overlap the next one's as separate vaults'
        # commits did; then it answers those who wait for them.
        heads = [p for p in listed if p.witness and p.error is None]
        self._answer([p for p in listed if all(p is not h for h in heads)])
        self._settle()
        self._finishing = finisher.submit(self._finish, heads, listed)

    def _finish(self, heads: list[Part], parts: list[Part]) -> None:
        try:
            write_heads(heads)
            self._answer(heads)
            self._later(parts)
        except BaseException as exc:
            for part in heads:
                for r in part.requests:
                    if not r.future.done():
                        r.future.set_exception(
                            VaultUnavailable(f"vault {part.vault.root}: HEAD not written: {exc}")
                        )
            raise

    def _answer(self, parts: list[Part]) -> None:
        """Resolve every request of ``parts``: its results, or its part's error."""
        for part in parts:
            if part.error is not None:
                for r in part.requests:
                    r.future.set_exception(part.error)
                continue
            if part.witness:
                with self._lock:
                    self._witnessed[part.vault] = time.monotonic()
            start = 0
            for r in part.requests:
                r.future.set_result(part.done[start : start + len(r.entries)])
                start += len(r.entries)

    def _later(self, parts: list[Part], *, bounded: bool = True) -> None:
        """The HEAD witnesses nobody waited for, after the answers."""
        later = [p for p in parts if p.later and p.error is None]
        written = each(lambda p: p.vault.witness(), later, bounded=bounded)
        for part, failed in zip(later, written, strict=True):
            if failed is None:
                with self._lock:
                    self._witnessed[part.vault] = time.monotonic()
            elif isinstance(failed, (VaultUnavailable, OSError)):  # lags until the next one
                event("vault.witness_failed", level=logging.ERROR, error=str(failed))
            else:
                raise failed


class GroupCommitter:
    """One vault's door to a ``SharedCommitter``: its own (made here) or its storage's one
    (``committer``)."""

    def __init__(self, vault: Vault, shared: SharedCommitter | None = None) -> None:
        self.vault = vault
        self.shared = SharedCommitter(vault.tenant) if shared is None else shared

    @property
    def groups(self) -> int:
        """Groups committed or failed by the shared committer (any vault's)."""
        return self.shared.groups

    @property
    def writers(self) -> int:
        return self.shared.writers

    def submit(
        self,
        entries: Sequence[Archive | Record],
        *,
        now: datetime,
        witness: bool = True,
        wait_witness: bool = True,
    ) -> Future[Done]:
        """Queue the entries for the next group; see the module contract."""
        return self.shared.submit(
            self.vault, entries, now=now, witness=witness, wait_witness=wait_witness
        )

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


_COMMITTERS: weakref.WeakKeyDictionary[Vault, GroupCommitter] = weakref.WeakKeyDictionary()
_SHARED: weakref.WeakKeyDictionary[Any, SharedCommitter] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def committer(vault: Vault) -> GroupCommitter:
    """The one GroupCommitter of ``vault`` (made at the first call), whose requests go to the
    one SharedCommitter of ``vault.storage``, with every other vault's on that storage."""
    with _REGISTRY_LOCK:
        found = _COMMITTERS.get(vault)
        if found is None:
            shared = _SHARED.get(vault.storage)
            if shared is None:
                path = getattr(vault.storage, "path", None)
                name = vault.tenant if path is None else str(getattr(path, "name", path))
                shared = _SHARED[vault.storage] = SharedCommitter(name)
            found = _COMMITTERS[vault] = GroupCommitter(vault, shared)
        return found
