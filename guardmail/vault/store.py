"""Blobs stored by SHA-256, and the Vault that archives an item before anything acts on it.

Contracts:
- ``Vault.put`` returns only when the raw bytes are durable: written to a temp file, fsync'd,
  renamed into place, the directory fsync'd, and the ``archived`` journal entry committed
  (SQLite synchronous=FULL). Any failure raises ``VaultUnavailable`` and leaves nothing half-done
  that a retry would trip over.
- The bytes are never transformed: the blob is exactly ``raw`` and its name is its SHA-256.
- The same bytes within the same dedupe scope archive once: a retry after a crash between archive
  and action, or an IMAP rescan after a UIDVALIDITY change, returns the first receipt
  (``duplicate=True``). The scope defaults to the source reference.
- Files are 0600 and directories 0700. One tenant, one directory: tenants never share blobs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from guardmail.errors import VaultUnavailable
from guardmail.storage.base import JournalRow, Storage, StorageUnavailable
from guardmail.vault import journal

HEAD_FILE = "HEAD"


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    sha256: str
    seq: int
    duplicate: bool = False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, dir fsync)."""
    # Unique per process and thread: two threads archiving at once must not share a temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class BlobStore:
    """Content-addressed files under ``root``: ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, raw: bytes, sha256: str) -> None:
        target = self.path(sha256)
        if target.is_file() and target.stat().st_size == len(raw):
            return  # content-addressed: same name, same bytes (verify re-hashes to be sure)
        for d in (self.root, target.parent):
            if not d.is_dir():
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                _fsync_dir(d.parent)
        write_durably(target, raw)

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


class Vault:
    """One tenant's evidence: blobs on disk, journal in storage, a HEAD witness file."""

    def __init__(self, root: Path, storage: Storage, tenant: str) -> None:
        self.root = root
        self.tenant = tenant
        self.storage = storage
        self.blobs = BlobStore(root / "blobs")

    def put(
        self,
        raw: bytes,
        *,
        source_ref: str,
        metadata: Mapping[str, Any],
        now: datetime,
        scope: str | None = None,
    ) -> Receipt:
        """Archive ``raw`` durably and journal it; see the module contract."""
        sha = hashlib.sha256(raw).hexdigest()
        scope = source_ref if scope is None else scope
        try:
            self.blobs.put(raw, sha)
            with self.storage.transaction() as tx:
                earlier = tx.find_archived(self.tenant, sha, scope)
                if earlier is not None:
                    return Receipt(sha256=sha, seq=earlier.seq, duplicate=True)
                fields = dict(metadata)
                fields["size"] = len(raw)
                row = journal.append(
                    tx,
                    tenant=self.tenant,
                    kind="archived",
                    fields=fields,
                    now=now,
                    sha256=sha,
                    source_ref=source_ref,
                    scope=scope,
                )
            self._write_head(row)
        except (OSError, StorageUnavailable) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot archive {sha}: {exc}") from exc
        return Receipt(sha256=sha, seq=row.seq)

    def record(
        self,
        kind: str,
        fields: Mapping[str, Any],
        *,
        now: datetime,
        sha256: str | None = None,
        source_ref: str | None = None,
    ) -> JournalRow:
        """Journal an event (an action taken, an export made ...)."""
        try:
            with self.storage.transaction() as tx:
                row = journal.append(
                    tx,
                    tenant=self.tenant,
                    kind=kind,
                    fields=fields,
                    now=now,
                    sha256=sha256,
                    source_ref=source_ref,
                )
            self._write_head(row)
        except (OSError, StorageUnavailable) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot journal {kind}: {exc}") from exc
        return row

    def rows(self, *, kind: str | None = None) -> list[JournalRow]:
        with self.storage.transaction() as tx:
            return list(tx.journal_rows(self.tenant, kind=kind))

    def row(self, seq: int) -> JournalRow | None:
        with self.storage.transaction() as tx:
            return tx.journal_row(self.tenant, seq)

    def head_witness(self) -> tuple[int, str] | None:
        """(seq, hash) from the HEAD file: an entry the journal must still contain unchanged."""
        try:
            text = (self.root / HEAD_FILE).read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        seq, _, digest = text.strip().partition(" ")
        return int(seq), digest

    def _write_head(self, row: JournalRow) -> None:
        # Written after the commit: it may lag the journal (a crash in between), never lead it.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_durably(self.root / HEAD_FILE, f"{row.seq} {row.hash}\n".encode("ascii"))
