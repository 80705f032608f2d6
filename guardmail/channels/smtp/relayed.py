"""What the content filter's next hop has taken, remembered for Postfix's retries.

See ``RelayedCopies``: keyed by Postfix's queue ID and the SHA-256 of the bytes, behind the
storage seam, so that a retry after a partial failure or a crash of the daemon sends no copy
twice. The daemon keeps them in a database of their own (``FILE`` in the state directory, opened
twice: a writer and a reader), not in the one every tenant's vault commits to: a record waits
for no other tenant's commit, and the look-up before each message waits for no commit at all.

Durability, the trade-off (issue 27): the writer runs SQLite's WAL with ``synchronous=NORMAL``
(``WRITER``), this database only; the vault's and the daemon's own stay FULL. A commit is in the
write-ahead log, in the kernel's page cache, when ``remember`` returns: a crash of the daemon
(SIGKILL, an OOM kill, a bug) loses no record, since the kernel still writes it out; a power loss
or a kernel crash may lose the last records (those the kernel has not written out yet: up to
about 30 s of them, its default writeback delay, or fewer at SQLite's next checkpoint), and a
retry of such a message then sends its copies a second time, as RFC 1047 and Postfix's own
content_filter accept (the archive is not touched: the vault keeps fsync'ing every commit). In
exchange no message waits for an fsync (14-18 ms at p50 on the bench machine).

On the event loop (``LOOP_WRITER``, a third connection): without an fsync a record's commit is
a few page writes into the log (tens of microseconds), less than handing it to a thread and back
(a wake-up of that thread, the GIL passed twice, the loop woken: ~3.7% of the daemon's time,
issue 27). Two things could still make that commit wait, so they never happen on that
connection: SQLite's automatic checkpoint (an fsync; it is turned off there, and the thread
checkpoints every ``MAINTAIN_EVERY`` records, with the old rows forgotten, ``KEEP``), and the
write lock held by another connection (its busy timeout is zero: such a record goes to the
thread, as before).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from guardmail.errors import StateError
from guardmail.logs import event
from guardmail.storage.base import Storage, StorageClosed, StorageUnavailable

KEEP = timedelta(days=7)  # longer than Postfix keeps a message queued (maximal_queue_lifetime 5d)
FILE = "relayed.sqlite3"  # in the daemon's state directory
# How the daemon opens FILE: the writer without an fsync per commit (see the module's trade-off),
# the reader never waiting for a lock, so that its look-up can run on the event loop.
WRITER: dict[str, Any] = {"synchronous": "NORMAL"}
READER: dict[str, Any] = {"busy_timeout_ms": 0}
LOOP_WRITER: dict[str, Any] = {
    "synchronous": "NORMAL",
    "busy_timeout_ms": 0,
    "autocheckpoint": False,
}
# Records committed on the loop between two checkpoints (and forgettings of old rows) in the
# thread: ~4 pages a record, so the log stays near SQLite's own default of 1,000 pages.
MAINTAIN_EVERY = 250


@runtime_checkable
class Checkpoints(Protocol):
    def checkpoint(self) -> None: ...


class RelayedCopies:
    """Copies the next hop accepted, per (queue ID, SHA-256): a retry does not send them again.

    Committed before ``remember`` returns (in the write-ahead log: it survives the daemon's crash,
    not always a power loss, see the module's trade-off), so that a retry after a crash of the
    daemon skips them too. A key of None (no queue ID: before-queue, where
    Postfix never retries) remembers nothing. Rows older than ``KEEP`` are forgotten as new ones
    are added. StorageUnavailable if the database cannot.

    The time between the next hop's 250 and this commit is the window in which a crash still
    delivers a copy twice (RFC 1047), so ``remember`` keeps it short: on the event loop with a
    ``loop_writer`` (see the module), else under a burst records arriving while one commits wait
    for the next commit together (one transaction), on a thread of their own rather than behind
    the pipeline's work.
    """

    def __init__(
        self,
        storage: Storage,
        tenant: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        reader: Storage | None = None,
        reader_never_waits: bool = False,
        loop_writer: Storage | None = None,
        owned: Sequence[Storage] = (),
    ) -> None:
        """``storage`` takes the records; ``reader`` (a second connection to the same database,
        else ``storage``) answers ``get``, so that a look-up never waits behind a commit.
        ``reader_never_waits``: it was opened with ``READER`` (``look_up`` then reads on the
        event loop). ``loop_writer``: a third connection, opened with ``LOOP_WRITER``, commits
        ``remember``'s records on the event loop (``storage`` then checkpoints the log, which
        it must be able to: SQLiteStorage). ``owned`` storages are closed by ``close``."""
        self._storage = storage
        self._reader = reader or storage
        self._reader_never_waits = reader_never_waits
        self._loop_writer = loop_writer
        self._unmaintained = 0  # records committed on the loop since the last maintenance
        self._maintainer: asyncio.Future[None] | None = None
        self._owned = tuple(owned)
        self._tenant = tenant
        self._clock = clock
        self._pending: list[tuple[tuple[str, str], Collection[str], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relayed")

    def adopt(self, legacy: Storage) -> int:
        """Move the records an older guardmail kept in ``legacy`` (the daemon's own database)
        here, so that a retry after the upgrade still skips them; how many (blocking). Copied
        first, then removed there: a crash in between leaves both, and the next start copies
        them again (the same rows: nothing changes)."""
        with legacy.read() as tx:
            rows = tx.all_relayed(self._tenant)
        if not rows:
            return 0
        with self._storage.transaction() as tx:
            for queue_id, sha256, copy, at in rows:
                tx.add_relayed(self._tenant, queue_id, sha256, [copy], at)
        with legacy.transaction() as tx:
            tx.forget_relayed(self._tenant, max(at for *_, at in rows) + "~")  # "~" after digits
        return len(rows)

    def get(self, key: tuple[str, str] | None) -> set[str]:
        """The copies remembered for ``key`` (blocking: run it in a thread)."""
        if key is None:
            return set()
        with self._reader.read() as tx:
            return tx.relayed(self._tenant, *key)

    async def look_up(self, key: tuple[str, str] | None) -> set[str]:
        """``get``, on the event loop when that is bounded, else in a thread.

        With a reader of its own opened with ``READER`` (no busy wait), the read is one indexed
        look-up (a few B-tree pages) in a WAL snapshot, which never waits for the writer: done
        here, it saves each message a hop to a thread and back (4 ms at p50 on a loaded loop;
        CPU 175 against 45 us a look-up in bench/relayed.py). Pages not in the page cache are
        read from disk: a handful of reads, as a B-tree of a week's records is 3-4 levels deep.
        The rare SQLITE_BUSY a WAL reader can still meet (another connection recovering the log)
        is not waited for here: the writer's connection answers it in a thread instead."""
        if key is None:
            return set()
        if self._reader is not self._storage and self._reader_never_waits:
            try:
                with self._reader.read() as tx:
                    return tx.relayed(self._tenant, *key)
            except StorageClosed:
                raise  # the daemon is stopping: the writer is closed too
            except StorageUnavailable:
                pass
            return await asyncio.to_thread(self._read_writer, key)
        return await asyncio.to_thread(self.get, key)

    def _read_writer(self, key: tuple[str, str]) -> set[str]:
        with self._storage.read() as tx:
            return tx.relayed(self._tenant, *key)

    def add(self, records: Sequence[tuple[tuple[str, str], Collection[str]]]) -> None:
        """Remember every (key, copies) in one transaction (blocking)."""
        now = self._clock()
        with self._storage.transaction() as tx:
            for key, copies in records:
                tx.add_relayed(self._tenant, *key, copies, now.isoformat())
            tx.forget_relayed(self._tenant, (now - KEEP).isoformat())

    async def remember(self, key: tuple[str, str] | None, copies: Collection[str]) -> None:
        """``add`` for one key: on the loop with a ``loop_writer``, else (or when that one
        meets a lock) in the thread, committed together with the others waiting meanwhile."""
        if key is None:
            return
        if self._loop_writer is not None and not self._pending:  # else after those, in order
            try:
                self._insert(self._loop_writer, [(key, copies)])
            except StorageClosed:
                raise  # the daemon is stopping
            except StorageUnavailable:
                pass  # another connection holds the write lock: the thread waits for it
            else:
                self._unmaintained += 1
                if self._unmaintained >= MAINTAIN_EVERY and (
                    self._maintainer is None or self._maintainer.done()
                ):
                    self._unmaintained = 0
                    loop = asyncio.get_running_loop()
                    self._maintainer = loop.run_in_executor(self._thread, self._maintain)
                return
        done = asyncio.get_running_loop().create_future()
        self._pending.append((key, copies, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit())
        await asyncio.shield(done)  # a cancelled caller does not cancel the others' commit

    def _insert(
        self, storage: Storage, records: Sequence[tuple[tuple[str, str], Collection[str]]]
    ) -> None:
        at = self._clock().isoformat()
        with storage.transaction() as tx:
            for key, copies in records:
                tx.add_relayed(self._tenant, *key, copies, at)

    def _maintain(self) -> None:
        """Forget the old rows and checkpoint the log (in the thread, for the loop's writer).
        A failure is left for the next time: the records themselves are committed."""
        try:
            with self._storage.transaction() as tx:
                tx.forget_relayed(self._tenant, (self._clock() - KEEP).isoformat())
            if isinstance(self._storage, Checkpoints):
                self._storage.checkpoint()
        except (StorageUnavailable, StateError) as exc:
            event("smtp_filter.relayed_maintenance_failed", level=logging.WARNING, error=str(exc))

    async def _commit(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._thread, self.add, [(k, c) for k, c, _ in batch])
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        for storage in self._owned:
            storage.close()
