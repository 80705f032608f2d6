"""Authenticity at receipt: an archived mail item's DKIM signatures, ARC chain and the trusted
server's Authentication-Results, checked after the item is archived and kept beside it.

Contracts:
- Never before the archive, never holding the item: the pipeline hands an item to ``submit``
  only after ``Vault.put_many`` returned (the bytes are fsync'd and journaled), and ``submit``
  only puts it on a bounded queue (``BACKLOG`` items) and returns at once, whatever DNS does. One
  worker thread per tenant checks the queue in order (started by ``submit``, ended after
  ``IDLE_SECONDS`` without work); the action on the item does not wait for it. A full queue
  drops the check (logged as ``receipt.unchecked``); a crash loses the checks still queued
  (the item stays archived; ``guardmail evidence verify-dkim`` says "not checked").
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
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

BACKLOG = 1000  # items waiting for their check; past it a check is dropped, never the item
IDLE_SECONDS = 60.0  # a worker with nothing to do this long ends (an ISP's many quiet tenants)


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    seq: int
    sha256: str
    raw: bytes


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
        backlog: int = BACKLOG,
    ) -> None:
        self.storage = storage
        self.tenant = tenant
        self.resolver = resolver
        self.authserv_id = authserv_id  # swapped on reload
        self.limits = limits
        self.clock = clock
        self.backlog = backlog
        self._jobs: deque[Job] = deque()
        self._busy = 0  # jobs taken but not yet recorded
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, *, seq: int, sha256: str, raw: bytes) -> bool:
        """Queue an archived item's check; False (and logged) if the queue is full or closed.
        Returns at once: it never waits for DNS or for the check."""
        with self._cond:
            if self._closed or len(self._jobs) >= self.backlog:
                event(
                    "receipt.unchecked",
                    level=logging.WARNING,
                    tenant=self.tenant,
                    seq=seq,
                    why="closed" if self._closed else f"{self.backlog} checks waiting",
                )
                return False
            self._jobs.append(Job(seq=seq, sha256=sha256, raw=raw))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"receipts-{self.tenant}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

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
                job = self._jobs.popleft()
                self._busy += 1
            try:
                self.check_now(seq=job.seq, sha256=job.sha256, raw=job.raw)
            except Exception:  # contained per item: the worker outlives any message
                logging.getLogger("guardmail").exception(
                    "receipt.error", extra={"gm_fields": {"tenant": self.tenant, "seq": job.seq}}
                )
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def check_now(self, *, seq: int, sha256: str, raw: bytes) -> ReceiptCheckRow:
        """Check and record one archived item in the calling thread."""
        from guardmail.vault.dkimcheck import check

        at = self.clock()
        found = check(raw, self.resolver, limits=self.limits, clock=self.clock)
        row = self.record(seq=seq, sha256=sha256, found=found, raw=raw, at=at)
        event(
            "receipt.checked",
            tenant=self.tenant,
            seq=seq,
            dkim=",".join(f"{s.domain}:{s.result}" for s in found.signatures if s.kind == "dkim"),
            arc=found.arc_result,
            trusted_results=bool(row.auth_results),
        )
        return row

    def record(
        self, *, seq: int, sha256: str, found: Check, raw: bytes, at: datetime
    ) -> ReceiptCheckRow:
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
        try:
            with self.storage.transaction() as tx:
                tx.put_receipt_check(row, results, keys)
        except (StorageUnavailable, StateError) as exc:
            event(
                "receipt.unrecorded",
                level=logging.ERROR,
                tenant=self.tenant,
                seq=seq,
                error=str(exc),
            )
            raise
        return row


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
