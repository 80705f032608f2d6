"""The signed log in a bundle: the vault's latest signed tree head, its signature, its public key,
and an inclusion proof (RFC 9162) for every exported item and warning against that head.

Files (under ``log/``, all listed in SHA256SUMS like every other file):

    tree-head.json        the exact bytes the head's Ed25519 signature covers
    tree-head.sig         the signature, 64 raw bytes
    public-key.pem        the tenant's public key (compare its fingerprint with the owner's
                          ``guardmail evidence key``: the bundle alone cannot prove whose it is)
    inclusion-proofs.json per exported file: its journal seq, leaf index (seq - 1) and audit path

A leaf is SHA-256(0x00 || the entry's body as UTF-8), the body as journal.jsonl gives it
(``guardmail.vault.treelog``). ``log_files`` raises ExportError if the vault's journal does not
match its own latest head: nothing is exported with a proof that cannot verify.
"""

from __future__ import annotations

import json
from typing import Any

from guardmail.core.merkle import Tree
from guardmail.export import ExportError
from guardmail.export.evidence import Evidence
from guardmail.storage.base import TreeHeadRow
from guardmail.vault.signing import fingerprint, load_key, public_pem, signed_bytes
from guardmail.vault.store import Vault
from guardmail.vault.treelog import leaf

HEAD_JSON, HEAD_SIG = "log/tree-head.json", "log/tree-head.sig"
PUBLIC_KEY, PROOFS = "log/public-key.pem", "log/inclusion-proofs.json"
PROOFS_FORMAT = "guardmail-inclusion-proofs/1"


def log_files(vault: Vault, evidence: Evidence) -> tuple[TreeHeadRow, str, dict[str, bytes]]:
    """(the head, the key's fingerprint, the files by bundle name); the vault must be sealed
    over every exported entry (``Vault.seal`` first)."""
    key = load_key(vault.root)
    heads = vault.tree_heads()
    if key is None or not heads:
        raise ExportError(f"vault {vault.root} has no signed tree head to prove the items against")
    head = heads[-1]
    wanted = [(i.file, i.seq) for i in evidence.items] + [
        (w.file, w.seq) for w in evidence.warnings
    ]
    if any(seq > head.tree_size for _, seq in wanted):
        raise ExportError(f"the latest signed tree head covers entries 1-{head.tree_size} only")
    rows = vault.stored_rows()[: head.tree_size]
    tree = Tree(leaf(r) for r in rows)
    if tree.size != head.tree_size or tree.root().hex() != head.root_hash:
        raise ExportError(
            f"the journal of vault {vault.root} does not match its signed tree head over entries "
            f"1-{head.tree_size}: run 'guardmail evidence verify' and export nothing until it is "
            "resolved"
        )
    proofs: dict[str, Any] = {
        "format": PROOFS_FORMAT,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "leaf": "SHA-256(0x00 || UTF-8 body of the journal entry)",
        "proofs": [
            {
                "file": file,
                "seq": seq,
                "leaf_index": seq - 1,
                "path": [h.hex() for h in tree.inclusion_path(seq - 1)],
            }
            for file, seq in wanted
        ],
    }
    public = key.public_key()
    files = {
        HEAD_JSON: signed_bytes(head),
        HEAD_SIG: bytes.fromhex(head.signature),
        PUBLIC_KEY: public_pem(public).encode("ascii"),
        PROOFS: (json.dumps(proofs, sort_keys=True, indent=1) + "\n").encode(),
    }
    return head, fingerprint(public), files


def log_readme(head: TreeHeadRow, key_fingerprint: str) -> str:
    """README.txt's section on the signed log (step 5)."""
    return f"""\
5. The signed log. The journal is also a Merkle tree (RFC 9162, Certificate Transparency):
   log/tree-head.json is the vault's latest signed tree head when this bundle was made (over
   entries 1-{head.tree_size}, signed {head.time}) with the root hash
    {head.root_hash}
   log/tree-head.sig is its Ed25519 signature, and log/public-key.pem the key that signed it,
   whose fingerprint is
    {key_fingerprint}
   Ask the owner for the fingerprint guardmail shows them ("guardmail evidence key") and
   compare: the bundle alone cannot prove whose key it is. The signature checks with

    openssl pkeyutl -verify -pubin -inkey log/public-key.pem -rawin \\
        -in log/tree-head.json -sigfile log/tree-head.sig

   which must print "Signature Verified Successfully". log/inclusion-proofs.json proves that
   each item's journal entry is leaf (seq - 1) of that tree: the leaf hash is
   SHA-256(0x00 || body) and the audit path is checked as RFC 9162 section 2.1.3.2 says, with
   SHA-256(0x01 || left || right) for each node. Keep this bundle: its head holds the owner's
   journal to what it was on that day. "guardmail evidence verify --against BUNDLE", run on
   the owner's vault at any later time, proves with a consistency proof that no entry covered
   by this head has been rewritten since, even by someone holding the signing key.
"""
