"""Checking a tenant's vault in place: the journal chain, its index columns, the HEAD witness and
every blob.

Reported, each naming the entry: a flipped byte in a blob (an item's, or a file attached to a
note), a blob missing, an altered, removed, inserted or reordered journal entry, an index column
(kind, sha256, source_ref, scope) that disagrees with the hashed entry, entries cut from the end
(HEAD names an entry the journal no longer has), a HEAD missing beside a journal with entries,
and what an append found wrong with HEAD before rewriting it (``TAMPERED``).

And the Merkle log's problems (``guardmail.vault.treelog.check_log``): a head whose signature
fails, or whose root no longer matches the journal, which catches an entry rewritten together
with the whole chain and HEAD after the head was signed.

What this does not catch: someone who can write the state directory *and read its key* can
re-sign a forged history; only a head kept elsewhere (an export bundle) shows that. A corrupt
HEAD file raises ``StateError``.
"""

from __future__ import annotations

import hashlib

from guardmail.errors import StateError
from guardmail.storage.base import JournalRow
from guardmail.vault import journal
from guardmail.vault.head import HEAD_FILE, TAMPER_FILE
from guardmail.vault.journal import GENESIS, Problem, check_chain
from guardmail.vault.signing import load_key
from guardmail.vault.store import Vault
from guardmail.vault.treelog import check_log


def verify_vault(vault: Vault, *, blobs: bool = True) -> list[Problem]:
    """Every problem found; ``blobs=False`` skips re-hashing the blobs (a quick health check)."""
    rows = vault.stored_rows()
    problems = check_chain(rows)
    by_seq = {r.seq: r for r in rows}
    last = rows[-1].seq if rows else 0
    witness = vault.head_witness()
    head = vault.root / HEAD_FILE
    if witness is None:
        if rows:
            problems.append(
                Problem(
                    seq=last,
                    message=f"{head} is missing but the journal has entries up to {last}: "
                    "HEAD deleted, perhaps with entries cut from the end",
                )
            )
    elif witness != (0, GENESIS):
        seq, digest = witness
        row = by_seq.get(seq)
        if row is None:
            problems.append(
                Problem(
                    seq=seq,
                    message=f"missing: HEAD names it but the journal ends at entry {last}",
                )
            )
        elif row.hash != digest:
            problems.append(Problem(seq=seq, message="differs from the HEAD witness"))
    try:
        key = load_key(vault.root)
    except StateError as exc:
        problems.append(Problem(seq=0, message=str(exc)))
        key = None
    problems.extend(check_log(rows, vault.tree_heads(), None if key is None else key.public_key()))
    for note in vault.tamper_notes():
        problems.append(Problem(seq=0, message=f"{vault.root / TAMPER_FILE}: {note}"))
    if blobs:
        problems.extend(_blob_problems(vault, rows))
    return sorted(problems, key=lambda p: p.seq)


def _blob_problems(vault: Vault, rows: list[JournalRow]) -> list[Problem]:
    """Every blob a hashed entry names (its item's, and a note's attached files) must exist and
    hash to its name (each checked once)."""
    problems: list[Problem] = []
    checked: set[str] = set()
    for row in rows:
        try:
            names = _named_blobs(journal.entry(row))
        except ValueError:
            continue  # reported by check_chain
        for sha in names:
            problem = _blob_problem(vault, sha, checked)
            if problem:
                problems.append(Problem(seq=row.seq, message=problem))
    return problems


def _named_blobs(body: dict[str, object]) -> list[object]:
    names = [body.get("sha256")]
    files = body.get("files")
    if body.get("kind") == "note" and isinstance(files, list):
        names += [f.get("sha256") for f in files if isinstance(f, dict)]
    return [n for n in names if n is not None]


def _blob_problem(vault: Vault, sha: object, checked: set[str]) -> str:
    """What is wrong with the blob named ``sha``, or "" (also for one checked before)."""
    # The body is whatever was written into the database: a list or an object here must be
    # named like any other bad name, not stop the check (it is not even hashable).
    if not isinstance(sha, str):
        return f"names blob {sha!r:.80}, not a SHA-256"
    if sha in checked:
        return ""
    checked.add(sha)
    try:
        path = vault.blobs.path(sha)
    except StateError:
        return f"names blob {sha!r:.80}, not a SHA-256"
    try:
        with path.open("rb") as blob:
            digest = hashlib.file_digest(blob, "sha256").hexdigest()
    except FileNotFoundError:
        return f"blob {sha} missing"
    except OSError as exc:
        return f"blob {sha} unreadable: {exc}"
    if digest != sha:
        return f"blob {sha} altered (SHA-256 mismatch)"
    return ""
