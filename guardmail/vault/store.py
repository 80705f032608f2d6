"""Blobs stored by SHA-256, and the Vault that archives an item before anything acts on it.

Contracts:
- ``Vault.put`` and ``Vault.put_many`` return only when the raw bytes are durable: each blob
  written to a temp file, fsync'd, renamed into place, its directory fsync'd (once per batch),
  and the ``archived`` journal entries committed (SQLite synchronous=FULL), a batch's entries in
  one transaction. Any failure raises ``VaultUnavailable`` and journals nothing of the batch: at
  most some blobs are on disk without an entry, which a retry finds in place (same name, same
  bytes) and journals then.
- The bytes are never transformed: the blob is exactly ``raw`` and its name is its SHA-256.
- The same bytes within the same dedupe scope archive once: a retry after a crash between archive
  and action, a retry of a batch the vault failed part-way, or an IMAP rescan after a UIDVALIDITY
  change returns the first receipt (``duplicate=True``). The scope defaults to the source
  reference.
- The HEAD witness names an entry the journal holds: it is written after the commit that made
  that entry, so it may lag the journal (a crash in between, or ``witness=False`` until the next
  ``record_many`` or ``witness``), never lead it. It is written once per call, not per entry.
- Files are 0600 and directories 0700. One tenant, one directory: tenants never share blobs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from guardmail import faults
from guardmail.errors import VaultUnavailable
from guardmail.storage.base import JournalRow, Storage, StorageUnavailable
from guardmail.vault import journal

HEAD_FILE = "HEAD"


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    sha256: str
    seq: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Archive:
    """One item for ``Vault.put_many``: its exact bytes and what the journal keeps beside them."""

    raw: bytes
    source_ref: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    scope: str | None = None  # dedupe scope; default: source_ref


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One event for ``Vault.record_many`` (an action taken, an export made ...)."""

    kind: str
    fields: Mapping[str, Any]
    sha256: str | None = None
    source_ref: str | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file, fsync it and rename it to ``path`` (the directory entry is
    durable only once the caller fsyncs ``path.parent``)."""
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


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, dir fsync)."""
    _write_synced(path, data)
    _fsync_dir(path.parent)


class BlobStore:
    """Content-addressed files under ``root``: ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, raw: bytes, sha256: str) -> None:
        self.put_many([(raw, sha256)])

    def put_many(self, blobs: Iterable[tuple[bytes, str]]) -> None:
        """Store each (raw, sha256) durably; the directories are fsync'd once each, at the end,
        so that returning means every blob's name and bytes are on disk."""
        touched: dict[Path, None] = {}  # ordered set
        for raw, sha256 in blobs:
            target = self.path(sha256)
            # Its directory is fsync'd even when the blob is already there: a call that failed
            # part-way may have renamed it into place without making the name durable.
            touched[target.parent] = None
            if target.is_file() and target.stat().st_size == len(raw):
                continue  # content-addressed: same name, same bytes (verify re-hashes to be sure)
            for d in (self.root, target.parent):
                if not d.is_dir():
                    d.mkdir(mode=0o700, parents=True, exist_ok=True)
                    _fsync_dir(d.parent)
            _write_synced(target, raw)
        for d in touched:
            _fsync_dir(d)

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
        archive = Archive(raw=raw, source_ref=source_ref, metadata=metadata, scope=scope)
        return self.put_many([archive], now=now)[0]

    def put_many(
        self, archives: Sequence[Archive], *, now: datetime, witness: bool = True
    ) -> list[Receipt]:
        """Archive every item durably and journal them in one transaction; receipts in order.

        All or nothing for the journal: on ``VaultUnavailable`` no entry of the batch exists, so
        a retry of the whole batch archives each item once. ``witness=False`` leaves the HEAD
        witness to a later ``record_many`` or ``witness`` (the pipeline writes it after acting).
        """
        if not archives:
            return []
        shas = [hashlib.sha256(a.raw).hexdigest() for a in archives]
        what = shas[0] if len(shas) == 1 else f"{len(shas)} items ({shas[0]} ...)"
        receipts: list[Receipt] = []
        last: JournalRow | None = None
        try:
            self.blobs.put_many((a.raw, sha) for a, sha in zip(archives, shas, strict=True))
            faults.reached("vault.blob")
            with self.storage.transaction() as tx:
                for archive, sha in zip(archives, shas, strict=True):
                    scope = archive.source_ref if archive.scope is None else archive.scope
                    # Also finds an earlier item of this same batch: identical bytes twice in
                    # one folder archive once, as they would one after the other.
                    earlier = tx.find_archived(self.tenant, sha, scope)
                    if earlier is not None:
                        receipts.append(Receipt(sha256=sha, seq=earlier.seq, duplicate=True))
                        continue
                    fields = dict(archive.metadata)
                    fields["size"] = len(archive.raw)
                    last = journal.append(
                        tx,
                        tenant=self.tenant,
                        kind="archived",
                        fields=fields,
                        now=now,
                        sha256=sha,
                        source_ref=archive.source_ref,
                        scope=scope,
                    )
                    receipts.append(Receipt(sha256=sha, seq=last.seq))
            if witness and last is not None:
                self._write_head(last)
        except (OSError, StorageUnavailable) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot archive {what}: {exc}") from exc
        return receipts

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
        event = Record(kind=kind, fields=fields, sha256=sha256, source_ref=source_ref)
        return self.record_many([event], now=now)[0]

    def record_many(self, records: Sequence[Record], *, now: datetime) -> list[JournalRow]:
        """Journal every event in one transaction, then write the HEAD witness once."""
        if not records:
            return []
        kinds = ", ".join(sorted({r.kind for r in records}))
        try:
            with self.storage.transaction() as tx:
                rows = [
                    journal.append(
                        tx,
                        tenant=self.tenant,
                        kind=r.kind,
                        fields=r.fields,
                        now=now,
                        sha256=r.sha256,
                        source_ref=r.source_ref,
                    )
                    for r in records
                ]
            self._write_head(rows[-1])
        except (OSError, StorageUnavailable) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot journal {kinds}: {exc}") from exc
        return rows

    def witness(self) -> None:
        """Write the HEAD witness for the journal's last entry (after ``put_many(witness=False)``
        when no ``record_many`` follows)."""
        try:
            with self.storage.transaction() as tx:
                head = tx.journal_head(self.tenant)
            if head is not None:
                self._write_head(head)
        except (OSError, StorageUnavailable) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot write HEAD: {exc}") from exc

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
