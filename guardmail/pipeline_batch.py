"""One batch on its way through the pipeline's steps (``guardmail.pipeline``, whose module
docstring states the order and the invariants): judge, archive, learn and queue the receipt
checks, act, journal the actions, announce, warn. Each step blocks; the drivers in
``Pipeline`` decide in which thread it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guardmail import faults
from guardmail.core.item import Channel, Item
from guardmail.core.rules import Action, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.vault.store import Archive, Receipt, Record

if TYPE_CHECKING:
    from guardmail.pipeline import Pipeline

_DONE_EVENT = {
    Action.REVIEW: "item.held_for_review",
    Action.QUARANTINE: "item.quarantined",
    Action.BLOCK: "item.blocked",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: Verdict
    receipt: Receipt | None = None
    done: str | None = None


def _from_matched(verdict: Verdict) -> bool:
    """Whether a rule of the verdict's offender matched the From address itself."""
    return any(m.header == "From" and m.offender == verdict.offender for m in verdict.matches)


class Batch:
    """One batch on its way through the steps. Each step blocks; the drivers decide where."""

    def __init__(self, pipeline: Pipeline, items: Sequence[Item], *, reviews: bool) -> None:
        self.pipeline = pipeline
        self.reviews = reviews
        self.all_verdicts = [self._judge(item) for item in items]
        # The items to block (with their positions in the batch), in order.
        self.where = [k for k, v in enumerate(self.all_verdicts) if v.action is not Action.PASS]
        self.items = [items[k] for k in self.where]
        self.verdicts = [self.all_verdicts[k] for k in self.where]
        self.receipts: list[Receipt] = []
        self.done: list[str] = []

    def _judge(self, item: Item) -> Verdict:
        verdict = self.pipeline.judge(item, reviews=self.reviews)
        event(
            "item.judged",
            level=logging.DEBUG,
            tenant=item.tenant,
            channel=str(item.channel),
            account=item.account,
            action=str(verdict.action),
        )
        return verdict

    def archives(self) -> list[Archive]:
        """What the vault keeps of the items to block, in order."""
        return [
            Archive(
                raw=item.raw,
                source_ref=item.source_ref,
                metadata=evidence_metadata(item, verdict),
                scope=item.dedupe_scope,
            )
            for item, verdict in zip(self.items, self.verdicts, strict=True)
        ]

    def archived(self, receipts: list[Receipt]) -> None:
        """The items are durable in the vault (their group committed; the HEAD witness waits
        for the action entries): the linker learns them, and they are logged."""
        self.receipts = receipts
        faults.reached("pipeline.archived")
        self.learn()
        self.queue_checks()
        # One INFO line an item (its outcome, ``announce``): a batch of several (an IMAP scan's
        # chunk of up to 500) logs its archiving once, each item's at DEBUG.
        level = logging.INFO if len(self.items) == 1 else logging.DEBUG
        for item, verdict, receipt in zip(self.items, self.verdicts, self.receipts, strict=True):
            event(
                "item.archived",
                level=level,
                tenant=item.tenant,
                account=item.account,
                seq=receipt.seq,
                sha256=receipt.sha256,
                duplicate=receipt.duplicate,
                offender=verdict.offender,
                source_ref=item.source_ref,
            )
        if level == logging.DEBUG and self.receipts:
            event(
                "items.archived",
                tenant=self.items[0].tenant,
                account=self.items[0].account,
                count=len(self.receipts),
                first_seq=self.receipts[0].seq,
                last_seq=self.receipts[-1].seq,
            )

    def learn(self) -> None:
        """The alias linker learns the offenders' items archived now for the first time."""
        linker = self.pipeline.linker
        if linker is None:
            return
        fresh = [
            (item, verdict.offender, receipt.sha256, _from_matched(verdict))
            for item, verdict, receipt in zip(self.items, self.verdicts, self.receipts, strict=True)
            if verdict.offender is not None and not receipt.duplicate
        ]
        if fresh:
            linker.learn(fresh, now=self.pipeline.clock())

    def queue_checks(self) -> None:
        """Mail items archived now for the first time go to the authenticity check, which runs
        beside the action and never delays it (``ReceiptChecker.submit`` returns at once)."""
        checker = self.pipeline.receipts
        if checker is None:
            return
        for item, receipt in zip(self.items, self.receipts, strict=True):
            if item.channel is Channel.MAIL and not receipt.duplicate:
                checker.submit(seq=receipt.seq, sha256=receipt.sha256, raw=item.raw)

    def witness(self) -> None:
        """The HEAD witness for the archived entries, when the actor failed (no ``finish``)."""
        try:
            self.pipeline.vault.witness()
        except VaultUnavailable as exc:
            event("vault.witness_failed", level=logging.ERROR, error=str(exc))

    def acted(self, done: list[str]) -> list[Record]:
        """The actor returned: the ``action`` entries to journal."""
        faults.reached("pipeline.acted")
        self.done = done
        return [
            Record(
                kind="action",
                fields={"archived_seq": r.seq, "action": str(v.action), "done": d},
                sha256=r.sha256,
                source_ref=i.source_ref,
            )
            for i, v, r, d in zip(self.items, self.verdicts, self.receipts, done, strict=True)
        ]

    def described(self, archives: list[Archive], done: list[str]) -> list[Record]:
        """The ``action`` entries of an actor whose action is its answer, to commit with
        ``archives`` (each fills in its archive's seq and SHA-256: ``Record.of``)."""
        self.done = done
        return [
            Record(
                kind="action",
                fields={"action": str(v.action), "done": d},
                source_ref=i.source_ref,
                of=a,
            )
            for i, v, a, d in zip(self.items, self.verdicts, archives, done, strict=True)
        ]

    def unjournaled(self, exc: VaultUnavailable) -> None:
        # The actions happened and cannot be undone; the archived entries stand. Say so.
        for receipt in self.receipts:
            event("action.unjournaled", level=logging.ERROR, seq=receipt.seq, error=str(exc))

    def announce(self) -> None:
        for item, verdict, receipt, text in zip(
            self.items, self.verdicts, self.receipts, self.done, strict=True
        ):
            event(
                _DONE_EVENT[verdict.action],
                tenant=item.tenant,
                seq=receipt.seq,
                offender=verdict.offender,
                suspected=verdict.suspicion.offender if verdict.suspicion else None,
                impersonation=verdict.impersonation.kind if verdict.impersonation else None,
                done=text,
            )

    def after(self) -> None:
        """``after_block`` (the warning step) for each item, in order."""
        hook = self.pipeline.after_block
        if hook is None:
            return
        for item, verdict in zip(self.items, self.verdicts, strict=True):
            if verdict.action is Action.REVIEW:
                continue  # never a warning to a suspected alias
            try:
                hook(item, verdict)
            except Exception:
                # A failed warning must not undo or repeat the item's handling; it is logged.
                logging.getLogger("guardmail").exception(
                    "warning.error", extra={"gm_fields": {"offender": verdict.offender}}
                )

    def outcomes(self) -> list[Outcome]:
        out = [Outcome(verdict=v) for v in self.all_verdicts]
        for n, k in enumerate(self.where):
            out[k] = Outcome(
                verdict=self.verdicts[n],
                receipt=self.receipts[n] if self.receipts else None,
                done=self.done[n] if self.done else None,
            )
        return out
