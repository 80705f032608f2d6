"""Evidence kept without acting: the person's own messages to an offender, and group-chat
messages (an offender's, and the room's messages around them).

Invariants:
- Archive only: nothing is moved, deleted, dropped, answered or warned. Each new entry is
  followed, in the same transaction, by one ``action`` entry saying it was left in place
  (``action: kept``), so that no restart's reconcile mistakes it for an action a crash cut
  (as ``imports/engine.py`` does for imported items).
- The bytes are the item's as received (``Item.raw``); the same bytes archive once per dedupe
  scope, and a duplicate gets no second ``action`` entry.
- The alias linker learns nothing here: the person's own messages are not an offender's, and
  a room's context is not either.
- Every entry carries what it is: ``direction`` (``outgoing`` for the person's side,
  ``incoming`` for what others wrote) and, for rooms, ``muc`` (room, nick, real JID if known,
  and ``context_of`` for the messages around an offender's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from guardmail.core.item import Item
from guardmail.core.rules import Verdict
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.storage.base import JournalRow, Transaction
from guardmail.vault import journal
from guardmail.vault.store import Archive, Receipt

KEPT = "kept"
OUTGOING = "outgoing"
INCOMING = "incoming"
LEFT_IN_PLACE = "archived only: left in place, never moved, answered or warned"


def keep_many(
    pipeline: Pipeline,
    items: Sequence[Item],
    verdicts: Sequence[Verdict],
    *,
    direction: str,
    done: str = LEFT_IN_PLACE,
    extra: Sequence[Mapping[str, Any]] | None = None,
) -> list[Receipt]:
    """Archive every item (blocking; one transaction) with its verdict's metadata, ``direction``
    and its ``extra`` fields (which may set another ``direction``), and an ``action: kept``
    entry for each new one. VaultUnavailable
    if the vault cannot take them (none is then journaled)."""
    if not items:
        return []
    more = list(extra) if extra is not None else [{} for _ in items]
    archives = [
        Archive(
            raw=item.raw,
            source_ref=item.source_ref,
            metadata=evidence_metadata(item, verdict) | {"direction": direction} | dict(add),
            scope=item.dedupe_scope,
        )
        for item, verdict, add in zip(items, verdicts, more, strict=True)
    ]
    vault = pipeline.vault
    now = pipeline.clock()

    def record(tx: Transaction, receipts: Sequence[Receipt]) -> JournalRow | None:
        last = None
        for item, r in zip(items, receipts, strict=True):
            if r.duplicate:
                continue
            last = journal.append(
                tx,
                tenant=vault.tenant,
                kind="action",
                fields={"archived_seq": r.seq, "action": KEPT, "done": done},
                now=now,
                sha256=r.sha256,
                source_ref=item.source_ref,
            )
        return last

    receipts = vault.put_many(archives, now=now, within=record)
    for item, verdict, r in zip(items, verdicts, receipts, strict=True):
        event(
            "item.kept",
            level=logging.INFO if verdict.offender else logging.DEBUG,
            tenant=item.tenant,
            account=item.account,
            direction=direction,
            seq=r.seq,
            sha256=r.sha256,
            duplicate=r.duplicate,
            offender=verdict.offender,
            source_ref=item.source_ref,
        )
    return receipts
