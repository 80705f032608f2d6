"""The journal as a Merkle log (RFC 9162): its leaves, its signed tree heads, and their checks.

Contracts:
- Leaf ``i`` (from 0) is journal entry ``seq = i + 1``. Its leaf input is the entry's canonical
  body, the UTF-8 bytes of ``JournalRow.body`` (the very text its chain hash covers), so that a
  third party holding only an entry's text computes its leaf hash with ``sha256sum``:
  ``SHA-256(0x00 || body)``. Not the chain hash: a leaf then needs no other entry to check, and
  the hash chain stays a second, independent check of the same entries.
- ``grow`` runs inside the transaction that appended entries: it signs one head (tree size, root,
  time) over every entry the last head does not cover, so entries and their head commit together
  (never one without the other). It costs O(k + log n) hashes for k new entries of n and one
  Ed25519 signature, reading back only the new entries: the right edge of the tree (a
  ``Frontier``) is kept under the storage cursor ``FRONTIER``, checked against the last head's
  root before use and rebuilt from the journal if it disagrees.
- A journal from before the log (a hash chain only) is sealed by the first ``grow``: its entries
  become the first leaves, its chain stays and is verified as before.
- ``check_log`` reports, each naming the head by its tree size: a signature that does not verify
  with the tenant's public key, a head larger than the journal (entries cut from the end), a head
  whose root is not the Merkle root of the journal's first ``tree_size`` entries (an entry among
  them changed since it was signed, even if the chain and HEAD were recomputed), successive heads
  that no consistency proof joins, and entries no head covers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from guardmail.core.merkle import Frontier, Tree, leaf_hash, verify_consistency
from guardmail.logs import event
from guardmail.storage.base import JournalRow, Transaction, TreeHeadRow
from guardmail.vault.journal import Problem
from guardmail.vault.signing import sign, signature_valid

if TYPE_CHECKING:  # the key is loaded, and cryptography imported, only when a head is signed
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

CURSOR_SOURCE, FRONTIER = "vault", "merkle-frontier"


def leaf(row: JournalRow) -> bytes:
    """The leaf hash of a journal entry (see the module contract)."""
    return leaf_hash(row.body.encode("utf-8", "surrogatepass"))


def _stored_frontier(tx: Transaction, tenant: str) -> Frontier | None:
    text = tx.cursor(tenant, CURSOR_SOURCE, FRONTIER)
    if text is None:
        return None
    size, _, hashes = text.partition(" ")
    try:
        raw = bytes.fromhex(hashes)
        return Frontier(
            size=int(size), hashes=tuple(raw[i : i + 32] for i in range(0, len(raw), 32))
        )
    except ValueError:
        return None


def _frontier(tx: Transaction, tenant: str, last: TreeHeadRow | None) -> Frontier:
    """The right edge of the tree the last head signed (rebuilt from the journal if the stored
    one is missing or disagrees with that head)."""
    if last is None:
        return Frontier()
    stored = _stored_frontier(tx, tenant)
    if stored is not None and stored.size == last.tree_size:
        if stored.root().hex() == last.root_hash:
            return stored
    event("vault.frontier_rebuilt", level=logging.WARNING, tenant=tenant, size=last.tree_size)
    rows = tx.journal_rows(tenant)
    return Frontier().extend(leaf(r) for r, _ in zip(rows, range(last.tree_size), strict=False))


def grow(
    tx: Transaction,
    *,
    tenant: str,
    key: Callable[[], Ed25519PrivateKey | None],
    now: datetime,
    appended: Sequence[JournalRow] = (),
) -> TreeHeadRow | None:
    """Sign and store a head over the whole journal if it has entries no head covers; the new
    head, or None. ``key()`` is asked for the tenant's key only then (None: no head is signed;
    the caller said why). A journal shorter than its last head (entries cut) gets no head: that is
    ``check_log``'s to report, and signing over it would bless the cut. ``appended``: the
    entries this transaction stored, in order; when they are exactly the ones no head covers,
    they are not read back (a read steps, and gives up the GIL, once per row)."""
    head = tx.journal_head(tenant)
    last = tx.tree_head_last(tenant)
    size = last.tree_size if last else 0
    if head is None or head.seq <= size:
        if head is not None and head.seq < size or head is None and size:
            event("vault.log_ahead_of_journal", level=logging.ERROR, tenant=tenant, head=size)
        return None
    signer = key()
    if signer is None:
        return None
    if appended and appended[0].seq == size + 1 and appended[-1].seq == head.seq:
        new: Iterable[JournalRow] = appended
    else:
        new = tx.journal_rows(tenant, after_seq=size)
    frontier = _frontier(tx, tenant, last).extend(leaf(r) for r in new)
    row = TreeHeadRow(
        tenant=tenant,
        tree_size=frontier.size,
        root_hash=frontier.root().hex(),
        time=now.isoformat(),
        signature="",
    )
    signed = TreeHeadRow(
        tenant=tenant,
        tree_size=row.tree_size,
        root_hash=row.root_hash,
        time=row.time,
        signature=sign(signer, row),
    )
    tx.tree_head_insert(signed)
    tx.set_cursor(
        tenant,
        CURSOR_SOURCE,
        FRONTIER,
        f"{frontier.size} {b''.join(frontier.hashes).hex()}",
    )
    return signed


def _describe(head: TreeHeadRow) -> str:
    return f"the signed tree head over entries 1-{head.tree_size} (signed {head.time})"


def check_log(
    rows: Sequence[JournalRow],
    heads: Sequence[TreeHeadRow],
    public: Ed25519PublicKey | None,
) -> list[Problem]:
    """Every problem of the log (module contract); ``rows`` are the journal as stored, in seq
    order; ``public`` None if the tenant has no key."""
    problems: list[Problem] = []
    if public is None and heads:
        problems.append(
            Problem(seq=0, message="the tree-head key is missing: no head can be checked")
        )
    tree = Tree(leaf(r) for r in rows)
    mismatched: list[TreeHeadRow] = []
    unjoined: list[tuple[TreeHeadRow, TreeHeadRow]] = []
    previous: TreeHeadRow | None = None
    for head in heads:
        if public is not None and not signature_valid(public, head):
            problems.append(
                Problem(seq=head.tree_size, message=f"{_describe(head)}: signature does not verify")
            )
        if head.tree_size > tree.size:
            problems.append(
                Problem(
                    seq=head.tree_size,
                    message=f"{_describe(head)}: the journal ends at entry {tree.size} "
                    "(entries cut from the end)",
                )
            )
            previous = head
            continue
        if tree.root(head.tree_size).hex() != head.root_hash:
            mismatched.append(head)
        if previous is not None and not _consistent(tree, previous, head):
            unjoined.append((previous, head))
        previous = head
    if mismatched:
        first = mismatched[0]
        earlier = [h.tree_size for h in heads if h.tree_size < first.tree_size]
        since = max(earlier) + 1 if earlier else 1
        more = _more(len(mismatched) - 1, "head")
        which = (
            f"entry {since}"
            if since == first.tree_size
            else f"an entry among {since}-{first.tree_size}"
        )
        problems.append(
            Problem(
                seq=first.tree_size,
                message=f"{_describe(first)} does not match the journal{more}: {which} was "
                "changed after it was signed",
            )
        )
    if unjoined:
        before, after = unjoined[0]
        more = _more(len(unjoined) - 1, "pair")
        problems.append(
            Problem(
                seq=after.tree_size,
                message=f"no consistency proof from the journal joins the head over entries "
                f"1-{before.tree_size} to {_describe(after)}{more}",
            )
        )
    covered = heads[-1].tree_size if heads else 0
    if tree.size > covered:
        problems.append(
            Problem(
                seq=tree.size,
                message=f"{_span(covered + 1, tree.size)} covered by no signed tree head "
                "(heads deleted, or a journal from before the log that no daemon has sealed yet)",
            )
        )
    return problems


def _consistent(tree: Tree, first: TreeHeadRow, second: TreeHeadRow) -> bool:
    """Whether the journal's consistency proof joins two heads (both within the journal)."""
    proof = tree.consistency_proof(first.tree_size, second.tree_size)
    return verify_consistency(
        first=first.tree_size,
        second=second.tree_size,
        first_root=_unhex(first.root_hash),
        second_root=_unhex(second.root_hash),
        proof=proof,
    )


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}-{last} are"


def _more(n: int, noun: str) -> str:
    return "" if n == 0 else f" (and {n} later {noun}{'s' if n > 1 else ''})"


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def check_handed_out(rows: Sequence[JournalRow], head: TreeHeadRow, where: str) -> list[Problem]:
    """A head that left the machine (an exported bundle's, at ``where``) against the journal:
    its first ``tree_size`` entries must still have its root, which a consistency proof from it
    to the whole journal shows. This is what catches a history rewritten *and re-signed* with
    the key from the vault directory."""
    tree = Tree(leaf(r) for r in rows)
    what = f"the head over entries 1-{head.tree_size} from {where} (signed {head.time})"
    if head.tree_size > tree.size:
        return [
            Problem(
                seq=head.tree_size,
                message=f"{what}: the journal ends at entry {tree.size} (entries cut)",
            )
        ]
    proof = tree.consistency_proof(head.tree_size)
    if verify_consistency(
        first=head.tree_size,
        second=tree.size,
        first_root=_unhex(head.root_hash),
        second_root=tree.root(),
        proof=proof,
    ):
        return []
    return [
        Problem(
            seq=head.tree_size,
            message=f"{what}: no consistency proof joins it to the journal: entries 1-"
            f"{head.tree_size} were rewritten after it was handed out",
        )
    ]
