"""Authenticity at receipt: an archived mail item's DKIM signatures, ARC chain and the trusted
server's Authentication-Results, checked after the item is archived and kept beside it.

Contracts:
- Never before the archive, never holding the item: the pipeline hands an item to ``submit``
  only after ``Vault.put_many`` returned (the bytes are fsync'd and journaled), and ``submit``
  only queues it and returns at once, whatever DNS does. The daemon's few worker threads
  (``guardmail.vault.receipt_workers``: per-tenant order, fair turns across tenants) check
  each tenant's queue in order; the action on the item does not wait for it.
- No check is dropped for want of room (a first scan archives thousands at once): the queues
  of all tenants hold at most ``BACKLOG_BYTES`` of message bytes (the turns in hand, taken
  from them, at most as much again); past that a job keeps only (seq, SHA-256)
  and its bytes are read back from the vault (``load``, the blob just fsync'd) when its turn
  comes. Such a job costs ~200 bytes of memory against the KBs its blob takes on disk, so the
  queue never outgrows the vault it trails. Without ``load`` (a checker not given the vault)
  the bytes stay in memory. Only ``close`` (the daemon stopping) refuses checks, logged as
  ``receipt.unchecked`` (and drops what it could not finish in its time, logged so too); a
  crash loses the checks still queued (the item stays archived), and ``catch_up`` (the
  daemon's start) queues them again: at most ``CATCH_UP`` archived mail entries without a
  check, oldest first, read back from the vault. Its query runs in the tenant's first turn on
  a worker thread, not on the caller's event loop, before any check submitted meanwhile
  (those are not queued twice). Such a check is not one
  at receipt: its ``checked_at`` is when it ran and its ``note`` says it was late (keys may
  have rotated since). Until then ``guardmail evidence verify-dkim`` says "not checked".
- A turn records its checks in one transaction (at most ``BATCH`` checks or ``COMMIT_SECONDS``
  of checking, whichever comes first; sooner when the queue is empty), not a transaction per
  item: the storage is shared with the pipeline and the watchers.
- Each check is bounded by ``dkimcheck.Limits`` (signatures, ARC sets, DNS time, CPU time).
- What is kept (``guardmail.storage.base``): one ``ReceiptCheckRow`` per archived entry, one
  ``DkimResultRow`` per signature, and every key record fetched as a ``DkimKeyRow``, stored once
  per (selector, domain, SHA-256 of the record) with the time and resolver of its first fetch.
  A failed lookup is kept as the signature's result (temperror/permerror and why).
- What was kept is read back and verified again offline by ``guardmail.vault.receipt_records``.
"""

from __future__ import annotations

import logging
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
from guardmail.vault import receipt_workers
from guardmail.vault.dkimlimits import DEFAULT_LIMITS, Limits
from guardmail.vault.receipt_workers import Workers

if TYPE_CHECKING:
    # dkimpy and dnspython (~20 MB) are imported by the worker at its first check, not with
    # every tenant (an ISP's many tenants rarely archive anything).
    from guardmail.vault.dkimcheck import Check
    from guardmail.vault.keyfetch import Resolver

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
    """One tenant's checks at receipt, queued for the daemon's receipt workers."""

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
        backlog_bytes: int | None = None,
        workers: Workers | None = None,
    ) -> None:
        self.storage = storage
        self.tenant = tenant
        self.resolver = resolver
        self.authserv_id = authserv_id  # swapped on reload
        self.limits = limits
        self.clock = clock
        self.load = load  # an archived blob's bytes by SHA-256 (Vault.blobs.get)
        self.backlog_bytes = backlog_bytes  # this tenant's own bound, under the workers' one
        self.workers = workers if workers is not None else receipt_workers.shared()
        self._cond = self.workers.cond  # one lock for every tenant's queue: moves only
        self._jobs: deque[Job] = deque()
        self._held = 0  # bytes of raw held by this tenant's queued jobs
        self._busy = 0  # jobs taken but not yet recorded
        self._catch_up = 0  # a catch-up asked, not yet run: its limit
        self._closed = False
        self.caught_up = 0  # checks the last catch-up queued again

    def submit(self, *, seq: int, sha256: str, raw: bytes) -> bool:
        """Queue an archived item's check; False (and logged) only once closed. Returns at
        once: it never waits for DNS or for the check."""
        with self._cond:
            if self._closed:
                event("receipt.unchecked", level=logging.WARNING, tenant=self.tenant, seq=seq)
                return False
            keep = self.load is None or (
                self.workers.held + len(raw) <= self.workers.backlog_bytes
                and (self.backlog_bytes is None or self._held + len(raw) <= self.backlog_bytes)
            )
            job = Job(seq=seq, sha256=sha256, raw=raw if keep else None)
            self._hold(job, 1)
            self._jobs.append(job)
            self.workers.ready(self)
        return True

    def _hold(self, job: Job, sign: int) -> None:
        """Count ``job``'s bytes in (1) or out (-1) of the bounds; under ``_cond``."""
        if job.raw is not None:
            self._held += sign * len(job.raw)
            self.workers.held += sign * len(job.raw)

    def catch_up(self, limit: int = CATCH_UP) -> None:
        """Queue again the archived mail entries that have no check recorded (a crash lost
        them), at most ``limit``. Returns at once: the query runs in the tenant's next turn on a
        worker thread (~1 us an archived entry: not on the event loop), and ``caught_up`` says
        how many it queued. Only with ``load``: their bytes are read back from the vault."""
        if self.load is None:
            return
        with self._cond:
            if self._closed:
                return
            self._catch_up = limit
            self.workers.ready(self)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued check is recorded; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self.has_work() and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking checks; let the workers finish the queue for at most ``timeout``
        seconds, then drop what is left (logged; the items stay archived, and the next start's
        ``catch_up`` queues them again). A turn in hand ends by itself."""
        with self._cond:
            self._closed = True
            if self._cond.wait_for(lambda: not self.has_work() and not self._busy, timeout):
                return
            dropped = len(self._jobs)
            for job in self._jobs:
                self._hold(job, -1)
            self._jobs.clear()
            self._catch_up = 0
        event("receipt.unchecked", level=logging.WARNING, tenant=self.tenant, entries=dropped)

    def has_work(self) -> bool:
        """Checks queued or a catch-up asked (under ``_cond``; ``Workers`` asks)."""
        return bool(self._jobs) or self._catch_up > 0

    def turn(self) -> None:
        """One turn on a worker thread (``Workers``): the catch-up if one was asked, then at
        most ``BATCH`` checks for ``COMMIT_SECONDS``; the rest go back to the queue's front."""
        with self._cond:
            limit, self._catch_up = self._catch_up, 0
        if limit:
            self._queue_missing(limit)
        with self._cond:
            n = min(receipt_workers.BATCH, len(self._jobs))
            jobs = [self._jobs.popleft() for _ in range(n)]
            for job in jobs:
                self._hold(job, -1)
            self._busy += n
        left: list[Job] = []
        try:
            left = self._check_batch(jobs)
        finally:
            with self._cond:
                for job in left:
                    self._hold(job, 1)
                self._jobs.extendleft(reversed(left))
                self._busy -= n
                self._cond.notify_all()

    def _queue_missing(self, limit: int) -> None:
        """The catch-up's query and queueing, at the start of a turn: no check of this tenant
        is in hand then, so each one submitted but not recorded is in ``_jobs``, not queued
        twice."""
        try:
            with self.storage.read() as tx:
                missing = tx.unchecked_archives(self.tenant, channel="mail", limit=limit)
        except (StorageUnavailable, StateError) as exc:
            event(
                "receipt.catch_up_failed", level=logging.WARNING, tenant=self.tenant, error=str(exc)
            )
            return
        with self._cond:
            queued = {j.seq for j in self._jobs}
            late = [
                Job(seq=seq, sha256=sha, raw=None, late=True)
                for seq, sha in missing
                if seq not in queued
            ]
            self._jobs.extendleft(reversed(late))  # oldest first, before the newer ones
            self.caught_up = len(late)
        if late:
            event("receipt.catching_up", tenant=self.tenant, entries=len(late))

    def _check_batch(self, jobs: list[Job]) -> list[Job]:
        """Check ``jobs`` in order and record them in one transaction; stop once
        ``COMMIT_SECONDS`` of checking are done and return the jobs not reached (another
        tenant's turn comes first). An error with one (a bug, an unreadable blob) is logged and
        the others go on."""
        done: list[Found] = []
        began = time.monotonic()
        for n, job in enumerate(jobs):
            if n and time.monotonic() - began >= receipt_workers.COMMIT_SECONDS:
                if done:
                    self._record_quietly(done)
                return jobs[n:]
            try:
                raw = job.raw if job.raw is not None else self._load(job.sha256)
                done.append(self._found(seq=job.seq, sha256=job.sha256, raw=raw, late=job.late))
            except Exception:  # contained per item: the worker outlives any message
                logging.getLogger("guardmail").exception(
                    "receipt.error", extra={"gm_fields": {"tenant": self.tenant, "seq": job.seq}}
                )
        if done:
            self._record_quietly(done)
        return []

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
