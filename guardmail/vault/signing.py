"""The tenant's tree-head key (Ed25519) and what it signs.

Contracts:
- The private key is ``KEY_FILE`` in the tenant's vault directory: PKCS#8 PEM, mode 0600, made
  once (at the first start, or the first append after it) and never replaced by guardmail. Two
  processes making it at once agree on one: it is linked into place only if missing.
- What a head's signature covers is ``signed_bytes``: the canonical JSON of
  ``{"format", "tenant", "tree_size", "root_hash", "time"}`` (sorted keys, no spaces, UTF-8).
  The bytes contain no secret, so an export writes them out as a file, and
  ``openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in head.json -sigfile head.sig``
  checks them without guardmail.
- The fingerprint of a public key is the SHA-256 (hex) of its 32 raw bytes.

Signing keys stored beside the journal do not stop someone who can read the vault directory from
signing a forged history: the heads prove the history only against a head that left the machine
first (an export bundle, a published head, later a timestamp).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from guardmail.errors import StateError
from guardmail.storage.base import TreeHeadRow
from guardmail.storage.files import private_dir
from guardmail.vault.blobs import fsync_dir, write_synced
from guardmail.vault.journal import canonical_json

KEY_FILE = "tree-head-key.pem"
HEAD_FORMAT = "guardmail-tree-head/1"


def signed_bytes(head: TreeHeadRow) -> bytes:
    return canonical_json(
        {
            "format": HEAD_FORMAT,
            "tenant": head.tenant,
            "tree_size": head.tree_size,
            "root_hash": head.root_hash,
            "time": head.time,
        }
    ).encode("utf-8")


def sign(key: Ed25519PrivateKey, head: TreeHeadRow) -> str:
    """The head's signature, hex (``head.signature`` is ignored)."""
    return key.sign(signed_bytes(head)).hex()


def signature_valid(public: Ed25519PublicKey, head: TreeHeadRow) -> bool:
    try:
        public.verify(bytes.fromhex(head.signature), signed_bytes(head))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_pem(text: bytes) -> Ed25519PublicKey:
    """ValueError unless ``text`` is an Ed25519 public key in PEM."""
    key = serialization.load_pem_public_key(text)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_key(vault_root: Path) -> Ed25519PrivateKey | None:
    """The tenant's key, or None if it was never made. StateError if the file is not one."""
    path = vault_root / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise StateError(f"{path}: not a tree-head key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StateError(f"{path}: not an Ed25519 key")
    return key


def make_key(vault_root: Path) -> Ed25519PrivateKey:
    """The tenant's key, made now (0600, fsync'd) if missing. OSError if it cannot be written."""
    found = load_key(vault_root)
    if found is not None:
        return found
    private_dir(vault_root)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = vault_root / KEY_FILE
    # Named like every temp file of ours, so that one left by a crash is removed at start-up.
    temp = vault_root / f".{KEY_FILE}-new.{os.getpid()}.{threading.get_ident()}.tmp"
    write_synced(temp, pem)
    try:
        os.link(temp, path)  # fails if another process made one meanwhile: theirs stands
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    fsync_dir(vault_root)
    made = load_key(vault_root)
    if made is None:
        raise StateError(f"{path}: vanished right after it was made")
    return made
