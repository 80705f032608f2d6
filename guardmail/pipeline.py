"""The one path from an item to an action: decide, archive, act, journal.

Invariants held here, for every channel:
- Archive before act: the actor is called only after the vault's group commit
  (``guardmail.vault.group``) resolved the batch's request, i.e. after the raw bytes and their
  journal entries are durable. If the vault fails, ``VaultUnavailable``
  propagates, nothing of the batch is acted on, and the source leaves it where it is to retry
  later (the vault's dedupe scope makes the retry archive nothing twice). An actor whose action
  is its answer to a waiting peer (``Actor.describe``: the milter) has its action entries
  committed in the archive's own transaction; the answer leaves only after that commit.
- Clean items (verdict ``pass``) are neither archived nor touched.
- Sources never call ``decide`` or the vault themselves: they build Items and carry out actions.
- A batch takes the same steps as one item, each step once for the whole batch: judge every
  item; archive the ones to block (one request to the vault's committer, which commits it in
  one transaction with whatever other requests of the tenant wait beside it); one call to the
  actor; their ``action`` entries in one request likewise, after which the HEAD witness is
  written (or, if the actor failed, after its failure); then ``after_block`` for each item, in
  order.
- Authenticity at receipt (DKIM, ARC, the trusted Authentication-Results) is checked after the
  archive, beside the action: archived mail items are queued to ``receipts`` and nothing of the
  path waits for the check or its DNS lookups.
- A crash between the action and its ``action`` entry is reconciled at the source's next start
  (``reconcile``): an item still where the source finds items is acted on again through the
  normal path when the source sees it (the vault's dedupe returns the first receipt, and its one
  ``action`` entry follows); an item already moved or gone gets one ``action`` entry saying
  where it is now. Either way each archived item ends with exactly one ``action`` entry.
- Two drivers run those steps: ``process``/``process_many`` for sources that live in the event
  loop (the blocking steps go to threads; waiting for the vault holds no thread), with
  ``submit``/``submit_many`` to queue an item for the vault at once and await the rest later
  (items submitted in a row share groups, journaled in the order submitted), and ``run_many``
  for a source that owns a thread (an IMAP folder watcher), which runs every step in that
  thread, with no hop through the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Protocol

from guardmail import faults
from guardmail.core.impersonation import OwnNames, may_be_backscatter
from guardmail.core.impersonation import check as impersonates
from guardmail.core.item import Channel, Item
from guardmail.core.rules import Action, RuleSet, Verdict, decide
from guardmail.errors import StateError, VaultUnavailable
from guardmail.linker import Linker
from guardmail.pipeline_batch import Batch, Outcome
from guardmail.reconcile import WhereNow, reconcile
from guardmail.vault.group import Done, committer
from guardmail.vault.receipts import ReceiptChecker
from guardmail.vault.store import Receipt, Vault


class Actor(Protocol):
    """What a source implements: carry out a verdict on an item it produced.

    A source that can hold items for review (a Review folder) says so with a class attribute
    ``reviews = True``; only its items are scored for suspected aliases (``Action.REVIEW``).
    One whose peer waits for the outcome (the milter's MTA) sets ``wait_witness = False``: the
    outcome is returned once the action entries are committed, before the HEAD witness is
    written (``guardmail.vault.group``).
    One whose action is its answer to that peer, sent only once the outcome is returned (the
    milter: nothing is done to the item before), may also implement ``describe(item, verdict)
    -> str``, what ``act`` would return: its action entries are then committed in the same
    transaction as the archived entries (one commit to wait for, not two), ``act`` is not
    called, and a crash leaves both entries or neither.
    """

    async def act(self, item: Item, verdict: Verdict) -> str:
        """Move, delete, reject or drop the item; return a short description of what was done."""
        ...


class BatchActor(Protocol):
    """What a source that acts on several items at once implements."""

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        """Carry out every verdict, together where the protocol allows; return one description
        per item, in order. Raise if that cannot be done: no action of the batch is journaled."""
        ...


# The blocking form of ``BatchActor.act_many``, for ``Pipeline.run_many``.
ActMany = Callable[[Sequence[Item], Sequence[Verdict]], list[str]]


class _OneItem:
    """An Actor seen as a BatchActor (``process`` hands it batches of one)."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.reviews = bool(getattr(actor, "reviews", False))
        self.wait_witness = bool(getattr(actor, "wait_witness", True))
        describe = getattr(actor, "describe", None)
        if describe is not None:
            self.describe_many = lambda items, verdicts: [
                describe(i, v) for i, v in zip(items, verdicts, strict=True)
            ]

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        return [await self.actor.act(i, v) for i, v in zip(items, verdicts, strict=True)]


class Pipeline:
    """One tenant's path. ``rules`` may be swapped at any time (hot reload); the swap is atomic."""

    def __init__(
        self,
        *,
        vault: Vault,
        rules: RuleSet,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_block: Callable[[Item, Verdict], None] | None = None,
        linker: Linker | None = None,
        own: OwnNames | None = None,
        receipts: ReceiptChecker | None = None,
    ) -> None:
        self.vault = vault
        self.rules = rules
        # The person's own addresses, for mail forged in their name (core/impersonation.py);
        # None when not configured. Swapped on reload like ``rules``.
        self.own = own
        # Suspected aliases (guardmail.linker): None for a pipeline that holds nothing for review.
        self.linker = linker
        self.clock = clock
        # The warning step (Warner.on_block): runs in a thread after the action; it decides
        # itself whether a warning is due and records it at most once.
        self.after_block = after_block
        # Authenticity at receipt (guardmail.vault.receipts): mail items newly archived are
        # queued for their DKIM/ARC check after the archive; nothing waits for it.
        self.receipts = receipts

    def judge(self, item: Item, *, reviews: bool = False) -> Verdict:
        """The rules' verdict; for mail they pass that impersonates the person, ``quarantine``
        (with no offender: never warned); else, on a source that ``reviews``, ``review`` if its
        sender looks like an offender's alias."""
        now = self.clock()
        verdict = decide(item.identities, self.rules, now=now)
        own = self.own
        if verdict.action is Action.PASS and own is not None and item.channel is Channel.MAIL:
            found = impersonates(item.raw, item.identities, own)
            if found is not None:
                return Verdict(action=Action.QUARANTINE, decided_at=now, impersonation=found)
        linker = self.linker
        if verdict.action is not Action.PASS or not reviews or linker is None:
            return verdict
        suspicion = linker.suspect(item, now=now)
        if suspicion is None:
            return verdict
        return Verdict(action=Action.REVIEW, decided_at=now, suspicion=suspicion)

    def judge_recipients(self, item: Item) -> Verdict:
        """The rules' verdict on whom ``item`` was written to (its identities are recipients:
        the person's own message, kept.py): nothing else (no impersonation, no alias review)."""
        return decide(item.identities, self.rules, now=self.clock())

    def needs_whole(self, probe: Item) -> bool:
        """For a source that judges by the header section first (``probe.raw`` is only that):
        whether the item must be judged again whole although its header passed (a bounce that
        may return mail forged in the person's name, core/impersonation.py)."""
        own = self.own
        return (
            own is not None and probe.channel is Channel.MAIL and may_be_backscatter(probe.raw, own)
        )

    async def process(self, item: Item, actor: Actor) -> Outcome:
        """Decide on ``item``; if it is to be blocked, archive it, then have ``actor`` act."""
        outcomes = await self.process_many([item], _OneItem(actor))
        return outcomes[0]

    async def process_many(self, items: Sequence[Item], actor: BatchActor) -> list[Outcome]:
        """Decide on every item; archive the ones to block, then have ``actor`` act on them
        together. One Outcome per item, in order."""
        return await self.submit_many(items, actor)

    def submit(self, item: Item, actor: Actor) -> Awaitable[Outcome]:
        """``process`` in two halves: judge ``item`` and queue it for the vault's next group
        now (so that items submitted one after the other are journaled in that order and share
        a group commit); await the result for the rest (archived, then acted on, journaled)."""
        return self._first(self.submit_many([item], _OneItem(actor)))

    def submit_many(self, items: Sequence[Item], actor: BatchActor) -> Awaitable[list[Outcome]]:
        """``process_many`` in two halves, as ``submit``."""
        batch = Batch(self, items, reviews=bool(getattr(actor, "reviews", False)))
        queued = None
        if batch.items:
            group = committer(self.vault)
            archives = batch.archives()
            describe = getattr(actor, "describe_many", None)
            if describe is not None:  # the action is the answer: one transaction for both
                records = batch.described(archives, describe(batch.items, batch.verdicts))
                wait = bool(getattr(actor, "wait_witness", True))
                queued = group.submit(
                    [*archives, *records], now=self.clock(), witness=True, wait_witness=wait
                )
                return self._answered(batch, queued)
            queued = group.submit(archives, now=self.clock(), witness=False)
        return self._complete(batch, actor, queued)

    @staticmethod
    async def _first(outcomes: Awaitable[list[Outcome]]) -> Outcome:
        return (await outcomes)[0]

    async def _answered(self, batch: Batch, queued: Future[Done]) -> list[Outcome]:
        """The rest of ``submit_many`` for an actor that ``describe``s: its archived and action
        entries are durable together, and the source answers once this returns."""
        done = await asyncio.wrap_future(queued)  # durable: only now may the answer leave
        receipts = [r for r in done if isinstance(r, Receipt)]

        def rest() -> None:
            batch.archived(receipts)
            faults.reached("pipeline.acted")
            faults.reached("pipeline.journaled")
            batch.announce()
            batch.after()

        # The linker's learning and the warning step block: one thread hop for both, not one
        # each (the answer waits for it; a hop was 2-4 ms median at 16 milter connections).
        if self.linker is not None or self.after_block is not None:
            await asyncio.to_thread(rest)
        else:
            rest()
        return batch.outcomes()

    async def _complete(
        self, batch: Batch, actor: BatchActor, queued: Future[Done] | None
    ) -> list[Outcome]:
        if queued is None:
            return batch.outcomes()
        done = await asyncio.wrap_future(queued)  # durable: only now may anything act
        receipts = [r for r in done if isinstance(r, Receipt)]
        if self.linker is not None:
            await asyncio.to_thread(batch.archived, receipts)
        else:
            batch.archived(receipts)
        try:
            acts = await actor.act_many(batch.items, batch.verdicts)
        except Exception:
            await asyncio.to_thread(batch.witness)
            raise
        records = batch.acted(acts)
        try:
            wait = bool(getattr(actor, "wait_witness", True))
            await asyncio.wrap_future(
                committer(self.vault).submit(
                    records, now=self.clock(), witness=True, wait_witness=wait
                )
            )
            faults.reached("pipeline.journaled")
        except VaultUnavailable as exc:
            batch.unjournaled(exc)
        batch.announce()
        if self.after_block is not None:
            await asyncio.to_thread(batch.after)
        return batch.outcomes()

    async def reconcile(self, where_now: WhereNow) -> list[int]:
        """At a source's start, before its first scan: see the module docstring and
        ``reconcile``. VaultUnavailable if the journal cannot be read or take the entries."""
        try:
            return await asyncio.to_thread(reconcile, self.vault, where_now, now=self.clock())
        except StateError as exc:  # a journal edited by hand: the source must still start
            raise VaultUnavailable(f"cannot reconcile after restart: {exc}") from exc

    def run_many(
        self, items: Sequence[Item], act_many: ActMany, *, reviews: bool = False
    ) -> list[Outcome]:
        """``process_many`` run in the calling thread, which it blocks (vault, actor, warnings)."""
        batch = Batch(self, items, reviews=reviews)
        if batch.items:
            group = committer(self.vault)
            batch.archived(group.put_many(batch.archives(), now=self.clock(), witness=False))
            try:
                acts = act_many(batch.items, batch.verdicts)
            except Exception:
                batch.witness()
                raise
            records = batch.acted(acts)
            try:
                group.record_many(records, now=self.clock())
                faults.reached("pipeline.journaled")
            except VaultUnavailable as exc:
                batch.unjournaled(exc)
            batch.announce()
            batch.after()
        return batch.outcomes()
