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
- Importing this module does not import cryptography (~7 MB resident): its functions do, when
  first called. A daemon that archives nothing (an ISP's milter with clean mail only) never
  loads a key, and ``check_key`` checks a key file in the form ``make_key`` writes without it.

Signing keys stored beside the journal do not stop someone who can read the vault directory from
signing a forged history: the heads prove the history only against a head that left the machine
first (an export bundle, a published head, later a timestamp).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from guardmail.errors import StateError
from guardmail.storage.base import TreeHeadRow
from guardmail.storage.files import private_dir
from guardmail.vault.blobs import fsync_dir, write_synced
from guardmail.vault.journal import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEY_FILE = "tree-head-key.pem"
HEAD_FORMAT = "guardmail-tree-head/1"
# An Ed25519 private key as PKCS#8 DER (RFC 8410, section 7) is these 16 bytes and its 32-byte
# seed, and any seed is a key: a file that is exactly the PEM of such DER is one.
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----\n", b"\n-----END PRIVATE KEY-----\n"


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
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(bytes.fromhex(head.signature), signed_bytes(head))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_pem(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_public_pem(text: bytes) -> Ed25519PublicKey:
    """ValueError unless ``text`` is an Ed25519 public key in PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(text)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_key(vault_root: Path) -> Ed25519PrivateKey | None:
    """The tenant's key, or None if it was never made. StateError if the file is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    """The tenant's key, made now (0600, fsync'd) if missing. OSError if it cannot be written,
    StateError if the file there is not a key."""
    made = make_key_file(vault_root)
    if made is None:
        raise StateError(f"{vault_root / KEY_FILE}: vanished right after it was made")
    return made


def make_key_file(vault_root: Path, *, load: bool = True) -> Ed25519PrivateKey | None:
    """``KEY_FILE`` made now (0600, fsync'd) if missing; the key loaded (``load``) or None.
    Made without cryptography: an Ed25519 private key is 32 random bytes (RFC 8032, 5.1.5),
    written as the PKCS#8 PEM (RFC 8410) cryptography writes for it (a test compares them),
    so a new tenant's key is made at start (``Vault.seal``) without importing it. OSError
    if it cannot be written, StateError if the file there is not a key."""
    path = vault_root / KEY_FILE
    if not check_key(vault_root):
        private_dir(vault_root)
        # Named like every temp file of ours, so that one left by a crash is removed at start.
        temp = vault_root / f".{KEY_FILE}-new.{os.getpid()}.{threading.get_ident()}.tmp"
        write_synced(temp, _pem(_PKCS8_ED25519 + secrets.token_bytes(32)))
        try:
            os.link(temp, path)  # fails if another process made one meanwhile: theirs stands
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        fsync_dir(vault_root)
    return load_key(vault_root) if load else None


def check_key(vault_root: Path) -> bool:
    """What ``load_key`` would find, without loading the key: True if the tenant has one, False
    if it was never made, StateError if the file is not one. A file in the form ``make_key``
    writes is checked here (cryptography is not imported); any other form is loaded by
    ``load_key`` (which may accept it: PEM and PKCS#8 allow other spellings of a key)."""
    try:
        data = (vault_root / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return False
    if data.startswith(_PEM_BEGIN) and data.endswith(_PEM_END):
        try:
            der = base64.b64decode(data[len(_PEM_BEGIN) : -len(_PEM_END)], validate=True)
        except binascii.Error:
            der = b""
        if len(der) == 48 and der.startswith(_PKCS8_ED25519) and data == _pem(der):
            return True
    return load_key(vault_root) is not None


def _pem(der: bytes) -> bytes:
    return _PEM_BEGIN + base64.b64encode(der) + _PEM_END
