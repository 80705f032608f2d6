"""The append-only journal: each entry carries the hash of the one before it.

Entry hash = SHA-256 of ``prev_hash + "\\n" + body``, where ``body`` is the canonical JSON of the
entry (sorted keys, no spaces, UTF-8) including its own ``seq``. Changing, removing or reordering
an entry therefore breaks the chain at that point, and ``check_chain`` names it. The first entry
of a tenant's chain follows ``GENESIS``.

Every character is written as itself, except surrogates, which have no UTF-8 form (aiosmtpd hands
over an 8-bit envelope byte as one, ``\\udcff``): a high one directly followed by a low one is
written as the character the pair stands for (what the pair means in JSON), and a lone one as its
JSON escape. Decoding a body gives the entry back, and encoding that gives the same body.

The columns stored beside the body (``kind``, ``sha256``, ``source_ref``, ``scope``) are an index
for lookups, not evidence: ``check_chain`` reports any that disagree with the body, and readers
take their values from the body (``indexed``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from guardmail.storage.base import JournalRow, Transaction

GENESIS = "0" * 64
# Names ``append`` fills from its arguments (the last three only when given).
RESERVED = frozenset({"seq", "tenant", "kind", "time", "sha256", "source_ref", "scope"})
_SURROGATE = re.compile("[\ud800-\udfff]")


def canonical_json(value: Mapping[str, Any]) -> str:
    """The one text of ``value`` that is hashed: sorted keys, no spaces, surrogates as the
    module docstring says (they can only stand inside a JSON string, so escaping is safe)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if _SURROGATE.search(text) is None:
        return text
    paired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", paired)


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
    """Append one entry after the tenant's current head, inside the caller's transaction.

    The arguments own the names they fill (``RESERVED``): a key of ``fields`` with one of those
    names is left out, so that the hashed body and the index columns always agree.
    """
    row = following(
        tx.journal_head(tenant),
        tenant=tenant,
        kind=kind,
        fields=fields,
        now=now,
        sha256=sha256,
        source_ref=source_ref,
        scope=scope,
    )
    tx.journal_insert(row)
    return row


def following(
    head: JournalRow | None,
    *,
    tenant: str,
    kind: str,
    fields: Mapping[str, Any],
    now: datetime,
    sha256: str | None = None,
    source_ref: str | None = None,
    scope: str | None = None,
) -> JournalRow:
    """The entry that follows ``head`` (None: the first of the chain), not stored: ``append``
    without the look at the head, for a caller that appends many in one transaction and
    stores them together (``Transaction.journal_insert_many``). Same body rules as ``append``.
    """
    seq = head.seq + 1 if head else 1
    prev = head.hash if head else GENESIS
    entry = {k: v for k, v in fields.items() if k not in RESERVED}
    entry.update(seq=seq, tenant=tenant, kind=kind, time=now.isoformat())
    if sha256 is not None:
        entry["sha256"] = sha256
    if source_ref is not None:
        entry["source_ref"] = source_ref
    if scope is not None:
        entry["scope"] = scope
    body = canonical_json(entry)
    return JournalRow(
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


def entry(row: JournalRow) -> dict[str, Any]:
    """The decoded body of a journal row."""
    value = json.loads(row.body)
    if not isinstance(value, dict):
        raise ValueError(f"journal entry {row.seq} is not a JSON object")
    return value


def _opt_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not text")
    return value


def indexed(row: JournalRow) -> JournalRow:
    """``row`` with its index columns taken from its body (what the hash covers).

    ValueError if the body is not a JSON object with text ``kind``, ``sha256`` and
    ``source_ref``. The ``scope`` column of entries written before it was in the body stays.
    """
    body = entry(row)
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"kind {kind!r} is not text")
    scope = _opt_text(body, "scope") if "scope" in body else row.scope
    return replace(
        row,
        kind=kind,
        sha256=_opt_text(body, "sha256"),
        source_ref=_opt_text(body, "source_ref"),
        scope=scope,
    )


def column_problems(row: JournalRow) -> list[str]:
    """The stored columns that disagree with the row's body (the body is what is hashed)."""
    try:
        body = entry(row)
    except ValueError:
        return ["body is not a JSON object"]
    found = []
    names = ["tenant", "kind", "sha256", "source_ref"] + (["scope"] if "scope" in body else [])
    for name in names:
        column = getattr(row, name)
        if body.get(name) != column:
            found.append(
                f"column {name} is {column!r} but the hashed entry says {body.get(name)!r}"
            )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}"


def check_chain(rows: Iterable[JournalRow]) -> list[Problem]:
    """Every break in the chain: altered, missing, inserted or reordered entries, and index
    columns that disagree with the hashed body."""
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
            for message in column_problems(row):
                problems.append(Problem(seq=row.seq, message=f"{message} (index tampered with)"))
        prev_hash = row.hash
        expected_seq = row.seq + 1
    return problems
