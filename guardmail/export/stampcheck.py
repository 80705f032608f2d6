"""Checking a bundle's trusted timestamps offline (files: see ``guardmail.export.stamps``).

Problems start with ``log:`` (or ``missing:``): for every token listed in log/timestamps.json,
the stamped head must be signed by the bundle's key, the token must be a good RFC 3161 token
over that head (``guardmail.vault.timestamps.check``: the TSA certificate chains to
log/timestamps/tsa-ca.pem and was valid at the token's time), its time must be the one listed,
and a consistency proof must join the stamped head to the bundle's head.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guardmail.core.merkle import verify_consistency
from guardmail.errors import TimestampFailed
from guardmail.export.logcheck import read_head
from guardmail.export.stamps import CA, INDEX, STAMPS_FORMAT, head_file
from guardmail.storage.base import TreeHeadRow
from guardmail.vault import timestamps
from guardmail.vault.signing import signature_valid, signed_bytes


def check_stamps(
    read: Callable[[str], bytes],
    present: set[str],
    head: TreeHeadRow,
    public: Ed25519PublicKey,
) -> list[str]:
    """Every problem of the bundle's timestamps ([] for a bundle without any)."""
    if INDEX not in present:
        return []
    try:
        doc = json.loads(read(INDEX))
        if not isinstance(doc, dict) or doc.get("format") != STAMPS_FORMAT:
            raise ValueError(f"not a {STAMPS_FORMAT} object")
        listed = doc.get("stamps")
        if not isinstance(listed, list) or not all(isinstance(s, dict) for s in listed):
            raise ValueError("no list of stamps")
    except ValueError as exc:
        return [f"log: {INDEX} cannot be read ({exc})"]
    if CA not in present:
        return [f"missing: {CA}"]
    try:
        roots = x509.load_pem_x509_certificates(read(CA))
    except ValueError as exc:
        return [f"log: {CA} is not a PEM certificate file ({exc})"]
    problems: list[str] = []
    for stamp in listed:
        problems += _check_one(read, present, stamp, head, public, roots)
    return problems


def _check_one(
    read: Callable[[str], bytes],
    present: set[str],
    stamp: dict[str, object],
    head: TreeHeadRow,
    public: Ed25519PublicKey,
    roots: list[x509.Certificate],
) -> list[str]:
    n = stamp.get("tree_size")
    if not isinstance(n, int):
        return [f"log: {INDEX} lists a stamp without a tree size"]
    names = [head_file(n, ext) for ext in ("json", "sig", "tsr")]
    gone = [f"missing: {name}" for name in names if name not in present]
    if gone:
        return gone
    data, token = read(names[0]), read(names[2])
    try:
        stamped = read_head(data, read(names[1]))
    except ValueError as exc:
        return [f"log: {names[0]} is not a signed tree head ({exc})"]
    if (
        stamped.tree_size != n
        or not signature_valid(public, stamped)
        or signed_bytes(stamped) != data
    ):
        return [f"log: {names[1]} does not verify {names[0]} with the bundle's public key"]
    try:
        when = timestamps.check(token, data, roots)
    except TimestampFailed as exc:
        return [f"log: {names[2]}: {exc}"]
    problems: list[str] = []
    if when.isoformat() != stamp.get("gen_time"):
        problems.append(
            f"log: {names[2]} is dated {when.isoformat()}, but {INDEX} says {stamp.get('gen_time')}"
        )
    proof = stamp.get("consistency")
    try:
        nodes = [bytes.fromhex(str(h)) for h in proof] if isinstance(proof, list) else None
        roots_ok = (bytes.fromhex(stamped.root_hash), bytes.fromhex(head.root_hash))
    except ValueError:
        nodes = None
    if nodes is None or not verify_consistency(
        first=n,
        second=head.tree_size,
        first_root=roots_ok[0],
        second_root=roots_ok[1],
        proof=nodes,
    ):
        problems.append(
            f"log: {names[0]}: no consistency proof joins it to the bundle's signed tree head "
            f"over entries 1-{head.tree_size}"
        )
    return problems
