"""The append-only journal: each entry carries the hash of the one before it.

Entry hash = SHA-256 of ``prev_hash + "\\n" + body``, where ``body`` is the canonical JSON of the
entry (sorted keys, no spaces, UTF-8) including its own ``seq``. Changing, removing or reordering
an entry therefore breaks the chain at that point, and ``check_chain`` names it. The first entry
of a tenant's chain follows ``GENESIS``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guardmail.storage.base import JournalRow, Transaction

GENESIS = "0" * 64


def canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def append(
    tx: Transaction,
    *,
    tenant: str,
    kind: str,
    fields: Mapping[str, Any],
    now: datetime,
    sha256: str | None = None,
    source_ref: str | None = None,
    scope: str | None = None,
) -> JournalRow:
    """Append one entry after the tenant's current head, inside the caller's transaction."""
    head = tx.journal_head(tenant)
    seq = head.seq + 1 if head else 1
    prev = head.hash if head else GENESIS
    entry = dict(fields)
    entry.update(seq=seq, tenant=tenant, kind=kind, time=now.isoformat())
    if sha256 is not None:
        entry["sha256"] = sha256
    if source_ref is not None:
        entry["source_ref"] = source_ref
    body = canonical_json(entry)
    row = JournalRow(
        tenant=tenant,
        seq=seq,
        kind=kind,
        body=body,
        prev_hash=prev,
        hash=chain_hash(prev, body),
        sha256=sha256,
        source_ref=source_ref,
        scope=scope,
    )
    tx.journal_insert(row)
    return row


def entry(row: JournalRow) -> dict[str, Any]:
    """The decoded body of a journal row."""
    value = json.loads(row.body)
    if not isinstance(value, dict):
        raise ValueError(f"journal entry {row.seq} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}"


def check_chain(rows: Iterable[JournalRow]) -> list[Problem]:
    """Every break in the chain: altered, missing, inserted or reordered entries."""
    problems: list[Problem] = []
    prev_hash = GENESIS
    expected_seq = 1
    for row in rows:
        if row.seq != expected_seq:
            problems.append(
                Problem(
                    seq=row.seq,
                    message=f"expected entry {expected_seq} here: entries removed or reordered",
                )
            )
        if row.prev_hash != prev_hash:
            problems.append(
                Problem(seq=row.seq, message="does not follow the entry before it (chain broken)")
            )
        if chain_hash(row.prev_hash, row.body) != row.hash:
            problems.append(Problem(seq=row.seq, message="content altered (hash mismatch)"))
        else:
            try:
                body_seq = entry(row).get("seq")
            except ValueError:
                body_seq = None
            if body_seq != row.seq:
                problems.append(
                    Problem(seq=row.seq, message=f"stored as entry {row.seq} but is {body_seq}")
                )
        prev_hash = row.hash
        expected_seq = row.seq + 1
    return problems
