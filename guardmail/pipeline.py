"""The one path from an item to an action: decide, archive, act, journal.

Invariants held here, for every channel:
- Archive before act: ``actor.act`` is called only after ``Vault.put`` returned, i.e. after the raw
  bytes and their journal entry are durable. If the vault fails, ``VaultUnavailable`` propagates
  and the source leaves the item where it is to retry later.
- Clean items (verdict ``pass``) are neither archived nor touched.
- Sources never call ``decide`` or the vault themselves: they build Items and carry out actions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from guardmail.core.item import Item
from guardmail.core.rules import Action, Match, RuleSet, Verdict, decide
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.vault.store import Receipt, Vault

_DONE_EVENT = {Action.QUARANTINE: "item.quarantined", Action.BLOCK: "item.blocked"}


class Actor(Protocol):
    """What a source implements: carry out a verdict on an item it produced."""

    async def act(self, item: Item, verdict: Verdict) -> str:
        """Move, delete, reject or drop the item; return a short description of what was done."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: Verdict
    receipt: Receipt | None = None
    done: str | None = None


def _match_fields(m: Match) -> dict[str, str]:
    return {
        "offender": m.offender,
        "action": str(m.action),
        "rule": m.rule,
        "header": m.header,
        "value": m.value,
        "normalized": m.normalized,
    }


def evidence_metadata(item: Item, verdict: Verdict) -> dict[str, Any]:
    """What the journal keeps beside the blob: who, where, when and why."""
    primary = verdict.primary
    return {
        "channel": str(item.channel),
        "account": item.account,
        "received_at": item.received_at.isoformat(),
        "subject": item.summary.subject,
        "message_id": item.summary.message_id,
        "date": item.summary.date,
        "action": str(verdict.action),
        "offender": primary.offender if primary else None,
        "rule": primary.rule if primary else None,
        "header": primary.header if primary else None,
        "matches": [_match_fields(m) for m in verdict.matches],
        "meta": dict(item.meta),
    }


class Pipeline:
    """One tenant's path. ``rules`` may be swapped at any time (hot reload); the swap is atomic."""

    def __init__(
        self,
        *,
        vault: Vault,
        rules: RuleSet,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_block: Callable[[Item, Verdict], None] | None = None,
    ) -> None:
        self.vault = vault
        self.rules = rules
        self.clock = clock
        # The warning step (Warner.on_block): runs in a thread after the action; it decides
        # itself whether a warning is due and records it at most once.
        self.after_block = after_block

    def judge(self, item: Item) -> Verdict:
        return decide(item.identities, self.rules, now=self.clock())

    async def process(self, item: Item, actor: Actor) -> Outcome:
        """Decide on ``item``; if it is to be blocked, archive it, then have ``actor`` act."""
        verdict = self.judge(item)
        event(
            "item.judged",
            level=logging.DEBUG,
            tenant=item.tenant,
            channel=str(item.channel),
            account=item.account,
            action=str(verdict.action),
        )
        if verdict.action is Action.PASS:
            return Outcome(verdict=verdict)
        receipt = await asyncio.to_thread(
            self.vault.put,
            item.raw,
            source_ref=item.source_ref,
            metadata=evidence_metadata(item, verdict),
            now=self.clock(),
            scope=item.dedupe_scope,
        )
        event(
            "item.archived",
            tenant=item.tenant,
            account=item.account,
            seq=receipt.seq,
            sha256=receipt.sha256,
            duplicate=receipt.duplicate,
            offender=verdict.offender,
            source_ref=item.source_ref,
        )
        done = await actor.act(item, verdict)
        try:
            await asyncio.to_thread(
                self.vault.record,
                "action",
                {"archived_seq": receipt.seq, "action": str(verdict.action), "done": done},
                now=self.clock(),
                sha256=receipt.sha256,
                source_ref=item.source_ref,
            )
        except VaultUnavailable as exc:
            # The action happened and cannot be undone; the archived entry stands. Say so loudly.
            event("action.unjournaled", level=logging.ERROR, seq=receipt.seq, error=str(exc))
        event(
            _DONE_EVENT[verdict.action],
            tenant=item.tenant,
            seq=receipt.seq,
            offender=verdict.offender,
            done=done,
        )
        if self.after_block is not None:
            try:
                await asyncio.to_thread(self.after_block, item, verdict)
            except Exception:
                # A failed warning must not undo or repeat the item's handling; it is logged.
                logging.getLogger("guardmail").exception(
                    "warning.error", extra={"gm_fields": {"offender": verdict.offender}}
                )
        return Outcome(verdict=verdict, receipt=receipt, done=done)
