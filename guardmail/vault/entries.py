"""What a vault commit takes and gives: the items archived, the events journaled, the receipts
(``guardmail.vault.store`` has the contracts; ``guardmail.vault.group`` commits them in groups)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardmail.storage.base import JournalRow, Transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    sha256: str
    seq: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Archive:
    """One item for ``Vault.put_many``: its exact bytes and what the journal keeps beside them."""

    raw: bytes
    source_ref: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    scope: str | None = None  # dedupe scope; default: source_ref


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One event for ``Vault.record_many`` (an action taken, an export made ...)."""

    kind: str
    fields: Mapping[str, Any]
    sha256: str | None = None
    source_ref: str | None = None
    # An Archive earlier in the same ``commit`` (the very object) that this entry is about: its
    # receipt fills ``sha256`` and ``fields["archived_seq"]``, so that an action entry commits
    # in one transaction with its archived entry (the milter: one fsync'd commit, not two).
    of: Archive | None = None


# For ``Vault.put_many(within=...)``: more writes in the same transaction as the batch's entries
# (given the receipts, in order); returns the last journal row it appended, if any.
Within = Callable[[Transaction, Sequence[Receipt]], JournalRow | None]


def digests(entries: Sequence[Archive | Record]) -> list[str]:
    """The SHA-256 of each Archive's bytes ("" for a Record), in order: a blob's name."""
    return [hashlib.sha256(e.raw).hexdigest() if isinstance(e, Archive) else "" for e in entries]


def describe(entries: Sequence[Archive | Record], shas: Sequence[str]) -> str:
    """What a failed commit could not do, for its ``VaultUnavailable``: "archive SHA",
    "archive N items (SHA ...)" or "journal KINDS"."""
    archived = [sha for e, sha in zip(entries, shas, strict=True) if isinstance(e, Archive)]
    if archived:
        first = archived[0]
        return "archive " + (first if len(entries) == 1 else f"{len(archived)} items ({first} ...)")
    kinds = ", ".join(sorted({e.kind for e in entries if isinstance(e, Record)}))
    return "journal " + (kinds or "nothing")
