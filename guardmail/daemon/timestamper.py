"""The daemon's background task that has the vault's new signed tree heads timestamped.

Contracts:
- At most one timestamp every ``every_minutes`` (counted from the last token's time, unless the
  TSA's clock is ahead of ours by more than that: ``timestamp.tsa_clock_ahead``), and only
  when a head newer than the last stamped one exists; the newest head is the one stamped.
- It never touches the archiving path: the TSA is asked from a worker thread, outside any
  transaction, and only the checked token is written (one short transaction).
- A failure (TSA down, refused, a token that does not check) logs ``timestamp.failed`` at
  error level (so ``guardmail status`` and the metrics show it) and is retried with backoff
  (``core.backoff.NETWORK``); a success logs ``timestamp.stamped``.
- Storage closed under it (the daemon stopping while a round runs in its worker thread, which
  cancelling the task does not stop): the round ends, ``timestamp.stopped`` is logged once
  (info), nothing is raised; a token got from the TSA then is not kept (the next start stamps
  the head again).
- After a new token, ``publish_command`` (if set) gets the head (guardmail.daemon.publish).
- Time is a parameter (``clock``); ``step`` does one round and returns the seconds to wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cryptography import x509

from guardmail.config.evidence import TimestampConfig
from guardmail.core.backoff import NETWORK, Backoff
from guardmail.daemon.publish import publish
from guardmail.errors import StateError, TimestampFailed, VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import StorageClosed, StorageUnavailable, TimestampRow
from guardmail.vault import timestamps
from guardmail.vault.signing import signed_bytes
from guardmail.vault.store import Vault

IDLE_SECONDS = 2.0  # how often to look for a new head when one may be stamped (2 indexed reads)


class Ask(Protocol):
    def __call__(self, url: str, message: bytes, *, timeout: float) -> tuple[bytes, int]: ...


class Timestamper:
    def __init__(
        self,
        vault: Vault,
        config: TimestampConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ask: Ask = timestamps.request,
        backoff: Backoff = NETWORK,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.vault = vault
        self.config = config
        self._clock = clock
        self._ask = ask
        self._backoff = backoff
        self._rand = rand
        self.failures = 0
        self.stopped = False
        self._roots: list[x509.Certificate] | None = None

    def step(self) -> float:
        """One round: stamp the newest head if one is due; seconds until the next round."""
        every = timedelta(minutes=self.config.every_minutes)
        try:
            head = self.vault.last_tree_head()
            last = self.vault.last_timestamp()
        except StorageClosed as exc:
            return self._stopped(exc)
        except (StorageUnavailable, StateError) as exc:
            return self._failed(f"the vault cannot be read: {exc}")
        if head is None or (last is not None and last.tree_size >= head.tree_size):
            return min(IDLE_SECONDS, every.total_seconds())
        now = self._clock()
        if last is not None:
            stamped = datetime.fromisoformat(last.gen_time)
            if stamped - now > every:
                # The TSA's clock is ahead of ours by more than a slot: counting from its time
                # would stop timestamps until that date. The slot counts from now instead (the
                # seconds returned after each token keep the pace).
                event(
                    "timestamp.tsa_clock_ahead",
                    level=logging.WARNING,
                    tenant=self.vault.tenant,
                    tsa=self.config.tsa_url,
                    gen_time=last.gen_time,
                )
            elif now < stamped + every:
                return max(1.0, (stamped + every - now).total_seconds())
        message = signed_bytes(head)
        try:
            if self._roots is None:
                self._roots = timestamps.load_roots(self.config.ca_file)
            reply, nonce = self._ask(
                self.config.tsa_url, message, timeout=self.config.timeout_seconds
            )
            when = timestamps.check(reply, message, self._roots, nonce=nonce)
            row = TimestampRow(
                tenant=self.vault.tenant,
                tree_size=head.tree_size,
                token=reply,
                gen_time=when.isoformat(),
                tsa_url=self.config.tsa_url,
                ca_pem=timestamps.anchors(reply, message, self._roots),
            )
            self.vault.keep_timestamp(row)
        except StorageClosed as exc:
            return self._stopped(exc)
        except (TimestampFailed, VaultUnavailable) as exc:
            self._roots = None  # a CA file fixed meanwhile is read again
            return self._failed(str(exc))
        self.failures = 0
        event(
            "timestamp.stamped",
            tenant=self.vault.tenant,
            tree_size=head.tree_size,
            gen_time=row.gen_time,
            tsa=self.config.tsa_url,
        )
        if self.config.publish_command:
            publish(self.config.publish_command, self.vault, head, row)
        return every.total_seconds()

    def _stopped(self, exc: StorageClosed) -> float:
        if not self.stopped:
            self.stopped = True
            event("timestamp.stopped", tenant=self.vault.tenant, reason=str(exc))
        return IDLE_SECONDS

    def _failed(self, error: str) -> float:
        delay = self._backoff.delay(self.failures, rand=self._rand())
        self.failures += 1
        event(
            "timestamp.failed",
            level=logging.ERROR,
            tenant=self.vault.tenant,
            tsa=self.config.tsa_url,
            error=error,
            failures=self.failures,
            retry_in=round(delay, 1),
        )
        return delay

    async def run(self) -> None:
        """Stamp for ever (run it in the daemon's TaskGroup)."""
        while True:
            delay = await asyncio.to_thread(self.step)
            await asyncio.sleep(delay)


class Timestampers:
    """One ``Timestamper`` per tenant vault that ``vaults`` returns at each round (the main
    tenant's and those of tenants.d, which come and go on reload), each on its own schedule."""

    def __init__(
        self,
        vaults: Callable[[], list[Vault]],
        config: TimestampConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._vaults = vaults
        self.config = config
        self._monotonic = monotonic
        self._by: dict[str, tuple[Timestamper, float]] = {}  # tenant -> (stamper, due)

    def round(self) -> float:
        """Step every vault that is due; seconds until the next is."""
        now = self._monotonic()
        current = {v.tenant: v for v in self._vaults()}
        for name in set(self._by) - set(current):
            del self._by[name]
        for name, vault in current.items():
            stamper, due = self._by.get(name, (None, now))
            if stamper is None or stamper.vault is not vault:
                stamper, due = Timestamper(vault, self.config), now
            if due <= now:
                due = now + stamper.step()
            self._by[name] = (stamper, due)
        if not self._by:
            return IDLE_SECONDS
        return max(0.0, min(due for _, due in self._by.values()) - self._monotonic())

    async def run(self) -> None:
        while True:
            delay = await asyncio.to_thread(self.round)
            await asyncio.sleep(max(delay, 0.05))
