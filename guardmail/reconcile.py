"""After a crash between an action and its ``action`` entry: the entry the source can place.

Used at a source's start, before its first scan (``Pipeline.reconcile``, or an IMAP folder
thread directly): see ``guardmail.pipeline``'s module contract.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from guardmail.logs import event
from guardmail.vault import journal
from guardmail.vault.store import Record, Vault

RECONCILED = "action reconciled after restart"

# For ``Pipeline.reconcile``: given an archived entry's body, None if the entry is not the
# source's or the item is still where the source will see it again; else where it is now.
WhereNow = Callable[[dict[str, Any]], str | None]


def reconcile(vault: Vault, where_now: WhereNow, *, now: datetime) -> list[int]:
    """Journal an ``action`` for every archived entry without one that ``where_now`` places
    (moved or gone since: the action happened before a crash kept it from the journal); the
    seqs of the archived entries reconciled. VaultUnavailable if the journal cannot take them."""
    records: list[Record] = []
    for row in vault.unacted():
        body = journal.entry(row)
        where = where_now(body)
        if where is None:
            continue
        records.append(
            Record(
                kind="action",
                fields={
                    "archived_seq": row.seq,
                    "action": body.get("action"),
                    "done": f"{RECONCILED}: {where}",
                    "reconciled": True,
                },
                sha256=row.sha256,
                source_ref=row.source_ref,
            )
        )
    if not records:
        return []
    vault.record_many(records, now=now)
    for record in records:
        event(
            "action.reconciled",
            level=logging.WARNING,
            tenant=vault.tenant,
            seq=record.fields["archived_seq"],
            done=record.fields["done"],
        )
    return [int(r.fields["archived_seq"]) for r in records]
