"""Checking a tenant's vault in place: the journal chain, the HEAD witness and every blob.

A flipped byte in a blob, an altered, removed, inserted or reordered journal entry, and entries cut
from the end (the HEAD witness names an entry the journal no longer has) are all reported, each
naming the entry.
"""

from __future__ import annotations

import hashlib

from guardmail.vault.journal import Problem, check_chain
from guardmail.vault.store import Vault


def verify_vault(vault: Vault, *, blobs: bool = True) -> list[Problem]:
    """Every problem found; ``blobs=False`` skips re-hashing the blobs (a quick health check)."""
    rows = vault.rows()
    problems = check_chain(rows)
    by_seq = {r.seq: r for r in rows}
    witness = vault.head_witness()
    if witness is not None:
        seq, digest = witness
        row = by_seq.get(seq)
        if row is None:
            last = rows[-1].seq if rows else 0
            problems.append(
                Problem(
                    seq=seq,
                    message=f"missing: HEAD names it but the journal ends at entry {last}",
                )
            )
        elif row.hash != digest:
            problems.append(Problem(seq=seq, message="differs from the HEAD witness"))
    for row in rows if blobs else ():
        if row.kind != "archived" or row.sha256 is None:
            continue
        path = vault.blobs.path(row.sha256)
        try:
            with path.open("rb") as blob:
                digest = hashlib.file_digest(blob, "sha256").hexdigest()
        except OSError as exc:
            problems.append(Problem(seq=row.seq, message=f"blob {row.sha256} unreadable: {exc}"))
            continue
        if digest != row.sha256:
            problems.append(
                Problem(seq=row.seq, message=f"blob {row.sha256} altered (SHA-256 mismatch)")
            )
    return sorted(problems, key=lambda p: p.seq)
