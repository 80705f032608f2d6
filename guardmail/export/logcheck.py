"""Checking a bundle's signed log offline (files: see ``guardmail.export.proofs``).

Problems start with ``log:`` (or ``missing:`` for an absent file): the tree head's signature
under the bundle's public key, the head's own fields, and for every item and warning of the
manifest an inclusion proof that verifies (RFC 9162 2.1.3.2) from the leaf hash of the
journal.jsonl entry it names to the signed root.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guardmail.core.merkle import leaf_hash, verify_inclusion
from guardmail.export.proofs import HEAD_JSON, HEAD_SIG, PROOFS, PROOFS_FORMAT, PUBLIC_KEY
from guardmail.storage.base import TreeHeadRow
from guardmail.vault.signing import HEAD_FORMAT, load_public_pem, signature_valid, signed_bytes


def read_head(data: bytes, signature: bytes) -> TreeHeadRow:
    """The head from tree-head.json; ValueError if it is not one."""
    fields = json.loads(data)
    if not isinstance(fields, dict) or fields.get("format") != HEAD_FORMAT:
        raise ValueError(f"not a {HEAD_FORMAT} object")
    size, root = fields.get("tree_size"), fields.get("root_hash")
    tenant, time = fields.get("tenant"), fields.get("time")
    if not isinstance(size, int) or not all(isinstance(v, str) for v in (root, tenant, time)):
        raise ValueError("tree_size, root_hash, tenant or time missing")
    return TreeHeadRow(
        tenant=str(tenant),
        tree_size=size,
        root_hash=str(root),
        time=str(time),
        signature=signature.hex(),
    )


def check_log(
    read: Callable[[str], bytes],
    present: set[str],
    bodies: Mapping[int, str],
    wanted: Mapping[str, Any],
) -> list[str]:
    """Every problem of the bundle's log; ``wanted``: each manifest file and its journal seq."""
    missing = [
        f"missing: {n}" for n in (HEAD_JSON, HEAD_SIG, PUBLIC_KEY, PROOFS) if n not in present
    ]
    if missing:
        return missing
    problems: list[str] = []
    try:
        public = load_public_pem(read(PUBLIC_KEY))
    except ValueError as exc:
        return [f"log: {PUBLIC_KEY} is not an Ed25519 public key ({exc})"]
    try:
        head = read_head(read(HEAD_JSON), read(HEAD_SIG))
    except ValueError as exc:
        return [f"log: {HEAD_JSON} is not a signed tree head ({exc})"]
    if not signature_valid(public, head) or _canonical_mismatch(read(HEAD_JSON), head):
        problems.append(f"log: {HEAD_SIG} does not verify {HEAD_JSON} with {PUBLIC_KEY}")
    try:
        doc = json.loads(read(PROOFS))
        if not isinstance(doc, dict) or doc.get("format") != PROOFS_FORMAT:
            raise ValueError(f"not a {PROOFS_FORMAT} object")
        entries = doc.get("proofs")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("no list of proofs")
        root = bytes.fromhex(head.root_hash)
    except ValueError as exc:
        return [*problems, f"log: {PROOFS} cannot be read ({exc})"]
    proven: set[str] = set()
    for e in entries:
        file, seq, path = str(e.get("file")), e.get("seq"), e.get("path")
        if wanted.get(file) != seq or not isinstance(seq, int) or seq not in bodies:
            problems.append(f"log: {PROOFS} has a proof for {file} seq {seq}, not in the manifest")
            continue
        try:
            nodes = [bytes.fromhex(str(h)) for h in path] if isinstance(path, list) else None
        except ValueError:
            nodes = None
        leaf = leaf_hash(bodies[seq].encode("utf-8", "surrogatepass"))
        if nodes is None or not verify_inclusion(
            index=seq - 1, size=head.tree_size, leaf=leaf, path=nodes, root=root
        ):
            problems.append(
                f"log: {file}: journal entry seq {seq} is not proven to be in the signed tree "
                f"head over entries 1-{head.tree_size}"
            )
            continue
        proven.add(file)
    for file in sorted(set(wanted) - proven):
        if not any(p.startswith(f"log: {file}:") for p in problems):
            problems.append(f"log: {file} has no inclusion proof in {PROOFS}")
    return problems


def bundle_head(
    read: Callable[[str], bytes], present: set[str]
) -> tuple[TreeHeadRow, Ed25519PublicKey]:
    """The bundle's signed tree head and public key; ValueError naming what is wrong if either
    is missing or unreadable, or the signature does not verify."""
    for name in (HEAD_JSON, HEAD_SIG, PUBLIC_KEY):
        if name not in present:
            raise ValueError(f"{name} is missing")
    public = load_public_pem(read(PUBLIC_KEY))
    head = read_head(read(HEAD_JSON), read(HEAD_SIG))
    if not signature_valid(public, head) or _canonical_mismatch(read(HEAD_JSON), head):
        raise ValueError(f"{HEAD_SIG} does not verify {HEAD_JSON} with {PUBLIC_KEY}")
    return head, public


def _canonical_mismatch(data: bytes, head: TreeHeadRow) -> bool:
    """True if tree-head.json holds other bytes than those the head it parses to would sign
    (the signature checks the parsed fields; this keeps the file itself honest too)."""
    return signed_bytes(head) != data
