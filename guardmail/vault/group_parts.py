"""A group of several vaults' requests (``guardmail.vault.group``): each vault's part, and its
commit beside the others' in one transaction (the contracts are in ``guardmail.vault.group``)."""

from __future__ import annotations

import errno
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guardmail import faults
from guardmail.errors import StateError
from guardmail.storage.base import JournalRow, StorageUnavailable
from guardmail.vault.blobwriter import BlobWriter
from guardmail.vault.entries import digests
from guardmail.vault.pools import lazy_pool
from guardmail.vault.store import Archive, Receipt, Record, Vault

# The vaults of a mixed group write their blobs (and HEAD witnesses) at once, in this many
# threads at most: their fsyncs in flight together join the file system's journal commits.
VAULT_THREADS = 8
# A vault's blob writes (in a thread) or HEAD witness in a mixed group not done by then fail its
# part (invariant 6: no tenant's stalled disk holds the others' requests for ever).
PART_SECONDS = 10.0

Done = list[Receipt | JournalRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    vault: Vault
    entries: Sequence[Archive | Record]
    now: datetime
    witness: bool
    wait_witness: bool
    future: Future[Done]

    @property
    def size(self) -> int:
        return sum(len(e.raw) for e in self.entries if isinstance(e, Archive))


@dataclass(slots=True, kw_only=True)
class Part:
    """One vault's requests in a mixed group, and how its commit went (filled as it goes)."""

    vault: Vault
    requests: list[Request]
    witness: bool = False  # its HEAD witness written before its requests are answered
    later: bool = False  # ... or after
    entries: list[Archive | Record] = field(default_factory=list)
    shas: list[str] = field(default_factory=list)
    blobs: int = 0
    error: BaseException | None = None
    done: Done = field(default_factory=list)
    last: JournalRow | None = None

    def fail(self, exc: BaseException) -> None:
        """This vault's part failed with ``exc``: as ``VaultUnavailable`` naming its entries
        (an OSError or a storage error), or as itself (a bug: its requests hear it)."""
        if self.error is None:
            if isinstance(exc, (OSError, StorageUnavailable, StateError)):
                exc = self.vault.unavailable(self.entries, self.shas, exc)
            self.error = exc


def commit_one(part: Part, when: datetime, writer: BlobWriter, *, writer_min: int) -> None:
    """A group of one vault (every group of a single-tenant daemon): ``Vault.commit``."""
    entries = [e for r in part.requests for e in r.entries]
    # A small group writes its blobs in this thread: a child costs a pipe round trip and,
    # the first time, its start; a large one hands them to the child (blobwriter.py).
    blobs = sum(isinstance(e, Archive) for e in entries)
    try:
        part.done = part.vault.commit(
            entries,
            now=when,
            witness=part.witness,
            point="vault.group",
            writer=writer if blobs >= writer_min else None,
        )
    except Exception as exc:  # VaultUnavailable, or a bug: every request of it must hear it
        part.error = exc


def commit_parts(parts: list[Part], when: datetime, writer: BlobWriter, *, writer_min: int) -> None:
    """A group of several vaults on one storage: each vault's blobs in its own directory,
    all at once; then one transaction for every vault whose blobs are durable, each its own
    chain and tree head (their HEAD witnesses are left to ``write_heads``). A vault's failure
    is its own: its requests hear it, the others' commit (invariant 6)."""
    for part in parts:
        part.entries = [e for r in part.requests for e in r.entries]
        part.shas = digests(part.entries)
        part.blobs = sum(isinstance(e, Archive) for e in part.entries)
    # Large parts go to the blob writer child, from this thread (the child is tied to it);
    # small ones are written by threads meanwhile: their fsyncs are in flight together.
    big = [p for p in parts if p.blobs >= writer_min]
    small = [p for p in parts if 0 < p.blobs < writer_min]
    pending = [(p, _submit(p, p.vault.write_blobs, p.entries, p.shas)) for p in small]
    deadline = time.monotonic() + PART_SECONDS
    for part in big:
        try:
            part.vault.write_blobs(part.entries, part.shas, writer=writer)
        except Exception as exc:
            part.fail(exc)
    for part, future in pending:
        failed = _outcome(part, future, deadline)
        if failed is not None:
            part.fail(failed)
    if any(p.blobs and p.error is None for p in parts):
        faults.reached("vault.group")
    live = [p for p in parts if p.error is None]
    storage = parts[0].vault.storage  # the same for every vault of this committer
    while live:
        current: Part | None = None
        try:
            with storage.transaction() as tx:
                for part in live:
                    current = part
                    part.done, part.last = part.vault.append(tx, part.entries, part.shas, now=when)
                current = None
            break
        except StorageUnavailable as exc:  # the storage itself: nobody's entries committed
            for part in live:
                part.fail(exc)
            return
        except Exception as exc:
            if current is None:  # the commit itself, after every part: nobody's committed
                for part in live:
                    part.fail(exc)
                return
            # That vault's own failure (its HEAD or TAMPERED file, its key; a bug): the
            # transaction rolled back, and is made again without it (once per such vault).
            current.fail(exc)
            live.remove(current)


def write_heads(parts: list[Part]) -> None:
    """The HEAD witness of every part that asked for it before its answer (``witness``), at
    once; a part whose HEAD cannot be written fails (as ``Vault.commit``: its entries are
    committed, HEAD lags them)."""
    heads = [p for p in parts if p.witness and p.error is None and p.last is not None]
    for part, failed in zip(heads, each(_write_head, heads), strict=True):
        if failed is not None:
            part.fail(failed)


def _write_head(part: Part) -> None:
    assert part.last is not None
    part.vault.write_head(part.last)


def each(
    run: Callable[[Part], object], parts: list[Part], *, bounded: bool = True
) -> list[BaseException | None]:
    """``run(part)`` for every part, at once in threads; each one's exception or None, in
    order (an OSError for one still running after ``PART_SECONDS``). Not ``bounded``: in this
    thread, one after the other (a group of one vault, as before)."""
    if not bounded:
        found: list[BaseException | None] = []
        for part in parts:
            try:
                run(part)
            except Exception as exc:
                found.append(exc)
            else:
                found.append(None)
        return found
    futures = [_submit(p, run, p) for p in parts]
    deadline = time.monotonic() + PART_SECONDS
    return [_outcome(p, f, deadline) for p, f in zip(parts, futures, strict=True)]


def _submit(part: Part, run: Callable[..., object], *args: Any) -> Future[Any]:
    """``run(*args)`` on the pool for ``part``'s vault; at once an ETIMEDOUT if a write of that
    vault that outlived its deadline is still running: a hung mount then holds one of the
    pool's threads, never all of them (each retry of that tenant would take another, and the
    other tenants' parts would wait behind them)."""
    with _LATE_LOCK:
        late = part.vault in _LATE
    if late:
        failed: Future[Any] = Future()
        failed.set_exception(
            OSError(errno.ETIMEDOUT, f"its write of {PART_SECONDS:g} s ago is still running")
        )
        return failed
    return _pool().submit(run, *args)


def _outcome(part: Part, future: Future[Any], deadline: float) -> BaseException | None:
    """The exception of ``future`` or None; ETIMEDOUT if it has not ended by ``deadline``: one
    vault's stalled file system (a hung mount) fails its own part, not the whole group. Its
    write goes on in its thread; a blob it lands later is found in place by the retry."""
    try:
        return future.exception(max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        with _LATE_LOCK:
            _LATE.add(part.vault)
        future.add_done_callback(lambda _: _on_time(part.vault))
        return OSError(errno.ETIMEDOUT, f"still writing after {PART_SECONDS:g} s")


def _on_time(vault: Vault) -> None:
    with _LATE_LOCK:
        _LATE.discard(vault)


_pool = lazy_pool(VAULT_THREADS, "vault-part")
_LATE_LOCK = threading.Lock()
# Vaults with a write still running past its deadline (guarded by _LATE_LOCK).
_LATE: weakref.WeakSet[Vault] = weakref.WeakSet()
