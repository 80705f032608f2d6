"""Authenticity at receipt: an archived mail item's DKIM signatures, ARC chain and the trusted
server's Authentication-Results, checked after the item is archived and kept beside it.

Contracts:
- Never before the archive, never holding the item: the pipeline hands an item to ``submit``
  only after ``Vault.put_many`` returned (the bytes are fsync'd and journaled), and ``submit``
  only queues it and returns at once, whatever DNS does. One worker thread per tenant checks
  the queue in order (started by ``submit``, ended after ``IDLE_SECONDS`` without work); the
  action on the item does not wait for it.
- No check is dropped for want of room (a first scan archives thousands at once): the queue
  holds at most ``BACKLOG_BYTES`` of message bytes (the worker's batch in hand, taken from it,
  at most as much again); past that a job keeps only (seq, SHA-256)
  and its bytes are read back from the vault (``load``, the blob just fsync'd) when its turn
  comes. Such a job costs ~200 bytes of memory against the KBs its blob takes on disk, so the
  queue never outgrows the vault it trails. Without ``load`` (a checker not given the vault)
  the bytes stay in memory. Only ``close`` (the daemon stopping) refuses checks, logged as
  ``receipt.unchecked``; a crash loses the checks still queued (the item stays archived), and
  ``catch_up`` (the daemon's start) queues them again: at most ``CATCH_UP`` archived mail
  entries without a check, oldest first, read back from the vault. Such a check is not one
  at receipt: its ``checked_at`` is when it ran and its ``note`` says it was late (keys may
  have rotated since). Until then ``guardmail evidence verify-dkim`` says "not checked".
- The worker records its checks in batches, one transaction each (at most ``BATCH`` checks or
  ``COMMIT_SECONDS`` of checking, whichever comes first; sooner when the queue is empty), not a
  transaction per item: the storage is shared with the pipeline and the watchers.
- Each check is bounded by ``dkimcheck.Limits`` (signatures, ARC sets, DNS time, CPU time).
- What is kept (``guardmail.storage.base``): one ``ReceiptCheckRow`` per archived entry, one
  ``DkimResultRow`` per signature, and every key record fetched as a ``DkimKeyRow``, stored once
  per (selector, domain, SHA-256 of the record) with the time and resolver of its first fetch.
  A failed lookup is kept as the signature's result (temperror/permerror and why).
- ``recheck_stored`` verifies a stored item again offline from those snapshots.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from guardmail.errors import StateError
from guardmail.logs import event
from guardmail.storage.base import (
    DkimKeyRow,
    DkimResultRow,
    ReceiptCheckRow,
    Storage,
    StorageUnavailable,
)
from guardmail.vault.dkimlimits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    # dkimpy and dnspython (~20 MB) are imported by the worker at its first check, not with
    # every tenant (an ISP's many tenants rarely archive anything).
    from guardmail.vault.dkimcheck import Check, Signature
    from guardmail.vault.keyfetch import Resolver

BACKLOG_BYTES = 64 * 1024 * 1024  # message bytes held by queued checks; past it, read back
BATCH = 200  # checks recorded in one transaction at most
COMMIT_SECONDS = 1.0  # checking time after which what is done is recorded (a slow DNS)
IDLE_SECONDS = 60.0  # a worker with nothing to do this long ends (an ISP's many quiet tenants)
CATCH_UP = 10_000  # checks lost by a crash queued again at a start, at most (~200 B each)
LATE_NOTE = "checked late, after a restart (the check queued at receipt was lost)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    seq: int
    sha256: str
    raw: bytes | None  # None: read back from the vault when checked (the queue was full)
    late: bool = False  # queued again at a start (catch_up), not at receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One check done, to be recorded with the others of its batch."""

    row: ReceiptCheckRow
    results: list[DkimResultRow]
    keys: list[DkimKeyRow]
    check: Check


class ReceiptChecker:
    """One tenant's checks at receipt, in one worker thread started on the first ``submit``."""

    def __init__(
        self,
        *,
        storage: Storage,
        tenant: str,
        resolver: Resolver,
        authserv_id: str = "",
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        load: Callable[[str], bytes] | None = None,
        backlog_bytes: int = BACKLOG_BYTES,
    ) -> None:
        self.storage = storage
        self.tenant = tenant
        self.resolver = resolver
        self.authserv_id = authserv_id  # swapped on reload
        self.limits = limits
        self.clock = clock
        self.load = load  # an archived blob's bytes by SHA-256 (Vault.blobs.get)
        self.backlog_bytes = backlog_bytes
        self._jobs: deque[Job] = deque()
        self._held = 0  # bytes of raw held by queued jobs
        self._busy = 0  # jobs taken but not yet recorded
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, *, seq: int, sha256: str, raw: bytes) -> bool:
        """Queue an archived item's check; False (and logged) only once closed. Returns at
        once: it never waits for DNS or for the check."""
        with self._cond:
            if self._closed:
                event("receipt.unchecked", level=logging.WARNING, tenant=self.tenant, seq=seq)
                return False
            keep = self.load is None or self._held + len(raw) <= self.backlog_bytes
            if keep:
                self._held += len(raw)
            self._jobs.append(Job(seq=seq, sha256=sha256, raw=raw if keep else None))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"receipts-{self.tenant}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

    def catch_up(self, limit: int = CATCH_UP) -> int:
        """Queue the archived mail entries that have no check recorded (a crash lost them);
        how many. Only with ``load``: their bytes are read back from the vault."""
        if self.load is None:
            return 0
        try:
            with self.storage.read() as tx:
                missing = tx.unchecked_archives(self.tenant, channel="mail", limit=limit)
        except (StorageUnavailable, StateError) as exc:
            event(
                "receipt.catch_up_failed", level=logging.WARNING, tenant=self.tenant, error=str(exc)
            )
            return 0
        if not missing:
            return 0
        event("receipt.catching_up", tenant=self.tenant, entries=len(missing))
        with self._cond:
            if self._closed:
                return 0
            self._jobs.extend(Job(seq=seq, sha256=sha, raw=None, late=True) for seq, sha in missing)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"receipts-{self.tenant}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return len(missing)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued check is recorded; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking checks; let the worker finish the queue for at most ``timeout`` seconds
        (the thread is a daemon thread: what is left is lost, never waited for)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed, IDLE_SECONDS)
                if not self._jobs:
                    self._thread = None  # the next submit starts another
                    return
                jobs = [self._jobs.popleft() for _ in range(min(BATCH, len(self._jobs)))]
                self._held -= sum(len(j.raw) for j in jobs if j.raw is not None)
                self._busy += len(jobs)
            try:
                self._check_batch(jobs)
            finally:
                with self._cond:
                    self._busy -= len(jobs)
                    self._cond.notify_all()

    def _check_batch(self, jobs: list[Job]) -> None:
        """Check ``jobs`` in order, recording them a transaction at a time; an error with one
        (a bug, an unreadable blob) is logged and the others go on."""
        done: list[Found] = []
        began = time.monotonic()
        for job in jobs:
            try:
                raw = job.raw if job.raw is not None else self._load(job.sha256)
                done.append(self._found(seq=job.seq, sha256=job.sha256, raw=raw, late=job.late))
            except Exception:  # contained per item: the worker outlives any message
                logging.getLogger("guardmail").exception(
                    "receipt.error", extra={"gm_fields": {"tenant": self.tenant, "seq": job.seq}}
                )
            if done and time.monotonic() - began >= COMMIT_SECONDS:
                self._record_quietly(done)
                done, began = [], time.monotonic()
        if done:
            self._record_quietly(done)

    def _load(self, sha256: str) -> bytes:
        assert self.load is not None  # a job without bytes is only queued when there is one
        return self.load(sha256)

    def _record_quietly(self, done: list[Found]) -> None:
        try:
            self.record_many(done)
        except (StorageUnavailable, StateError):
            pass  # logged by record_many; the items stay archived, "not checked"
        except Exception:  # a bug must not end the worker: the next submits would wait forever
            logging.getLogger("guardmail").exception(
                "receipt.error",
                extra={"gm_fields": {"tenant": self.tenant, "seqs": [f.row.seq for f in done]}},
            )

    def check_now(self, *, seq: int, sha256: str, raw: bytes) -> ReceiptCheckRow:
        """Check and record one archived item in the calling thread."""
        found = self._found(seq=seq, sha256=sha256, raw=raw)
        self.record_many([found])
        return found.row

    def _found(self, *, seq: int, sha256: str, raw: bytes, late: bool = False) -> Found:
        from guardmail.vault.dkimcheck import check

        at = self.clock()
        found = self.prepare(
            seq=seq,
            sha256=sha256,
            found=check(raw, self.resolver, limits=self.limits, clock=self.clock),
            raw=raw,
            at=at,
        )
        if not late:
            return found
        note = f"{LATE_NOTE}; {found.row.note}" if found.row.note else LATE_NOTE
        return replace(found, row=replace(found.row, note=note))

    def record_many(self, done: list[Found]) -> None:
        """Store ``done`` in one transaction; on failure ``receipt.unrecorded`` for each, and
        the storage's error propagates."""
        try:
            with self.storage.transaction() as tx:
                for f in done:
                    tx.put_receipt_check(f.row, f.results, f.keys)
        except (StorageUnavailable, StateError) as exc:
            for f in done:
                event(
                    "receipt.unrecorded",
                    level=logging.ERROR,
                    tenant=self.tenant,
                    seq=f.row.seq,
                    error=str(exc),
                )
            raise
        # A group of several (an IMAP scan's chunk) is logged once at INFO, each check at DEBUG.
        level = logging.INFO if len(done) == 1 else logging.DEBUG
        for f in done:
            event(
                "receipt.checked",
                level=level,
                tenant=self.tenant,
                seq=f.row.seq,
                dkim=",".join(
                    f"{s.domain}:{s.result}" for s in f.check.signatures if s.kind == "dkim"
                ),
                arc=f.check.arc_result,
                trusted_results=bool(f.row.auth_results),
            )
        if level == logging.DEBUG and done:
            event(
                "receipts.checked",
                tenant=self.tenant,
                count=len(done),
                first_seq=done[0].row.seq,
                last_seq=done[-1].row.seq,
            )

    def prepare(self, *, seq: int, sha256: str, found: Check, raw: bytes, at: datetime) -> Found:
        """The rows that record ``found`` (no I/O)."""
        from guardmail.vault.dkimcheck import trusted_results

        row = ReceiptCheckRow(
            tenant=self.tenant,
            seq=seq,
            sha256=sha256,
            checked_at=at.isoformat(),
            resolver=self.resolver.name,
            arc_result=found.arc_result,
            arc_reason=found.arc_reason,
            authserv_id=self.authserv_id,
            auth_results=trusted_results(raw, self.authserv_id),
            note=found.note,
        )
        results = [
            DkimResultRow(
                tenant=self.tenant,
                seq=seq,
                idx=n,
                kind=s.kind,
                domain=s.domain,
                selector=s.selector,
                algorithm=s.algorithm,
                result=s.result,
                reason=s.reason,
                key_sha256=s.key_sha256,
            )
            for n, s in enumerate(found.signatures)
        ]
        keys = [
            DkimKeyRow(
                tenant=self.tenant,
                selector=snap.selector,
                domain=snap.domain,
                record_sha256=snap.sha256,
                record=snap.record,
                fetched_at=snap.fetched_at.isoformat(),
                resolver=snap.resolver,
            )
            for snap in found.snapshots
            if snap.record is not None and snap.sha256 is not None
        ]
        return Found(row=row, results=results, keys=keys, check=found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """An item's check as stored, with the key snapshots its signatures used (by SHA-256)."""

    check: ReceiptCheckRow | None
    results: tuple[DkimResultRow, ...]
    keys: dict[str, DkimKeyRow]

    def records(self) -> dict[str, bytes]:
        """``SELECTOR._domainkey.DOMAIN`` -> the record as fetched (for ``dkimcheck.recheck``)."""
        return {f"{k.selector}._domainkey.{k.domain}": k.record for k in self.keys.values()}


def stored(storage: Storage, tenant: str, seq: int) -> Stored:
    """The check kept for entry ``seq`` (``check`` None if it was never checked)."""
    with storage.read() as tx:
        row = tx.receipt_check(tenant, seq)
        results = tuple(tx.dkim_results(tenant, seq))
        keys: dict[str, DkimKeyRow] = {}
        for r in results:
            if r.key_sha256 and r.key_sha256 not in keys:
                key = tx.dkim_key(tenant, r.key_sha256)
                if key is not None:
                    keys[r.key_sha256] = key
    return Stored(check=row, results=results, keys=keys)


def recheck_stored(raw: bytes, kept: Stored, *, limits: Limits = DEFAULT_LIMITS) -> list[Signature]:
    """The item's signatures verified again, offline, from the snapshots kept at receipt."""
    from guardmail.vault.dkimcheck import recheck

    return list(recheck(raw, kept.records(), limits=limits).signatures)
