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
- A brand-new vault (no journal entry, no HEAD) gets a HEAD naming entry 0 (``GENESIS``) before
  its first entry is committed, so that from then on a missing HEAD is tampering, never a fresh
  start (``evidence verify`` says so).
- Files are 0600 and directories 0700. One tenant, one directory: tenants never share blobs.
- Blob paths are built in one place, ``BlobStore.path``, and only from a 64-hex SHA-256; a blob is
  read only through ``BlobStore.get``, which returns its bytes only if they hash to that name.
- Every commit that appends entries also stores a signed tree head over the whole journal, in
  the same transaction (``guardmail.vault.treelog``); the tenant's Ed25519 key is made in the
  vault directory (0600) the first time one is needed, or by ``seal`` at start-up, which also
  seals a journal from before the log.
- Readers see journal rows through ``rows``/``row``, whose index columns come from the hashed
  body (``journal.indexed``): editing a column changes no answer, and ``evidence verify`` names it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guardmail import faults
from guardmail.errors import StateError, VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import (
    JournalRow,
    Storage,
    StorageUnavailable,
    TimestampRow,
    Transaction,
    TreeHeadRow,
)
from guardmail.storage.files import private_dir, remove_stale_temps, tighten
from guardmail.vault import journal, treelog
from guardmail.vault.blobs import BlobStore, write_durably
from guardmail.vault.signing import make_key

HEAD_FILE = "HEAD"
ROWS_PAGE = 1000  # journal entries read per snapshot by iter_rows
TAMPER_FILE = "TAMPERED"  # notes of a HEAD found missing or broken before an append


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


# For ``Vault.put_many(within=...)``: more writes in the same transaction as the batch's entries
# (given the receipts, in order); returns the last journal row it appended, if any.
Within = Callable[[Transaction, Sequence[Receipt]], JournalRow | None]


class Vault:
    """One tenant's evidence: blobs on disk, journal in storage, a HEAD witness file."""

    def __init__(self, root: Path, storage: Storage, tenant: str) -> None:
        self.root = root
        self.tenant = tenant
        self.storage = storage
        self.blobs = BlobStore(root / "blobs")
        self._key: Ed25519PrivateKey | None = None

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
        self,
        archives: Sequence[Archive],
        *,
        now: datetime,
        witness: bool = True,
        within: Within | None = None,
    ) -> list[Receipt]:
        """Archive every item durably and journal them in one transaction; receipts in order.

        All or nothing for the journal: on ``VaultUnavailable`` no entry of the batch exists, so
        a retry of the whole batch archives each item once. ``witness=False`` leaves the HEAD
        witness to a later ``record_many`` or ``witness`` (the pipeline writes it after acting).
        ``within`` runs inside the same transaction, after the entries: what it writes (an
        import's progress, its entries) commits with them or not at all. With ``within``, a
        transaction is made even when ``archives`` is empty.
        """
        if not archives and within is None:
            return []
        shas = [hashlib.sha256(a.raw).hexdigest() for a in archives]
        what = (
            shas[0] if len(shas) == 1 else f"{len(shas)} items" + (f" ({shas[0]} ...)" * bool(shas))
        )
        receipts: list[Receipt] = []
        last: JournalRow | None = None
        try:
            self.blobs.put_many((a.raw, sha) for a, sha in zip(archives, shas, strict=True))
            faults.reached("vault.blob")
            with self.storage.transaction() as tx:
                self._check_witness(tx)
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
                if within is not None:
                    last = within(tx, receipts) or last
                if last is not None:
                    self._grow(tx, now)
            if witness and last is not None:
                self._write_head(last)
        except (OSError, StorageUnavailable, StateError) as exc:
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
                self._check_witness(tx)
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
                self._grow(tx, now)
            self._write_head(rows[-1])
        except (OSError, StorageUnavailable, StateError) as exc:
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
        except (OSError, StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot write HEAD: {exc}") from exc

    def seal(self, *, now: datetime) -> None:
        """Sign a tree head over the entries no head covers yet (a journal from before the log,
        at the first start), making the tenant's key if it has none. VaultUnavailable if not."""
        try:
            with self.storage.transaction() as tx:
                self._grow(tx, now)
        except (OSError, StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot sign a tree head: {exc}") from exc

    def _grow(self, tx: Transaction, now: datetime) -> None:
        if self._key is None:
            try:
                self._key = make_key(self.root)
            except StateError as exc:
                # A damaged key must not stop archiving (items would wait in place for ever):
                # the entries are journaled unsigned, and that is noted and reported.
                self._note_tampering(f"{exc}; entries are journaled without a signed tree head")
                return
        treelog.grow(tx, tenant=self.tenant, key=self._key, now=now)

    def tree_heads(self) -> list[TreeHeadRow]:
        """The tenant's signed tree heads, smallest first."""
        with self.storage.read() as tx:
            return list(tx.tree_heads(self.tenant))

    def last_tree_head(self) -> TreeHeadRow | None:
        with self.storage.read() as tx:
            return tx.tree_head_last(self.tenant)

    def timestamps(self) -> list[TimestampRow]:
        """The tenant's RFC 3161 tokens over its tree heads, smallest tree first."""
        with self.storage.read() as tx:
            return list(tx.timestamps(self.tenant))

    def last_timestamp(self) -> TimestampRow | None:
        with self.storage.read() as tx:
            return tx.timestamp_last(self.tenant)

    def keep_timestamp(self, row: TimestampRow) -> None:
        """Store a checked token beside its head (``guardmail.vault.timestamps``)."""
        try:
            with self.storage.transaction() as tx:
                tx.timestamp_insert(row)
        except (StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot keep a timestamp: {exc}") from exc

    def stored_rows(self) -> list[JournalRow]:
        """The journal rows exactly as stored, index columns included (for ``verify``)."""
        with self.storage.read() as tx:
            return list(tx.journal_rows(self.tenant))

    def _indexed(self, row: JournalRow) -> JournalRow:
        try:
            return journal.indexed(row)
        except ValueError as exc:
            raise StateError(
                f"journal entry {row.seq} of vault {self.root} is unreadable ({exc}): "
                "run 'guardmail evidence verify'"
            ) from None

    def rows(self, *, kind: str | None = None) -> list[JournalRow]:
        """The journal in seq order (only ``kind`` when given), index columns from the body."""
        return list(self.iter_rows(kind=kind))

    def iter_rows(self, *, kind: str | None = None, page: int = ROWS_PAGE) -> Iterator[JournalRow]:
        """``rows`` streamed: ``page`` entries at a time, each page one read snapshot (no write
        lock, nothing held between pages), so a long journal is never in memory at once."""
        after = 0
        while True:
            with self.storage.read() as tx:
                batch = list(islice(tx.journal_rows(self.tenant, after_seq=after), page))
            for stored in batch:
                indexed = self._indexed(stored)
                if kind is None or indexed.kind == kind:
                    yield indexed
            if len(batch) < page:
                return
            after = batch[-1].seq

    def row(self, seq: int) -> JournalRow | None:
        with self.storage.read() as tx:
            found = tx.journal_row(self.tenant, seq)
        return None if found is None else self._indexed(found)

    def acted(self, sha256: str, scope: str) -> str | None:
        """The action journaled for these bytes archived within this dedupe scope, or None (not
        archived, or not acted on yet): a source that is handed the same item again (Postfix
        retrying a message whose reply a crash cut off) knows it was handled.
        VaultUnavailable if the journal cannot be read."""
        try:
            with self.storage.read() as tx:
                archived = tx.find_archived(self.tenant, sha256, scope)
                actions = [] if archived is None else tx.find_actions(self.tenant, sha256)
        except (StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot read its journal: {exc}") from exc
        for row in actions:
            body = journal.entry(row)
            if archived is not None and body.get("archived_seq") == archived.seq:
                return str(body.get("action"))
        return None

    def unacted(self) -> list[JournalRow]:
        """The ``archived`` entries that no ``action`` entry answers (a crash in between)."""
        rows = self.rows()
        acted = {journal.entry(r).get("archived_seq") for r in rows if r.kind == "action"}
        return [r for r in rows if r.kind == "archived" and r.seq not in acted]

    def open(self) -> None:
        """Start-up care of the tenant's directories (see ``guardmail.storage.files``): the vault
        directory and its parent private (tightened with a warning if they were not), and the
        temp files of writers that died removed. Best effort: a vault that cannot be tidied now
        is logged, not fatal (archiving then fails, and items stay where they are until it can).
        """
        try:
            for d in (self.root.parent, self.root):
                if d.is_dir():
                    tighten(d)
                else:
                    private_dir(d)
            for d in (self.root, *self.blobs.directories()):
                remove_stale_temps(d)
        except (OSError, StateError) as exc:
            event("vault.untidy", level=logging.WARNING, vault=str(self.root), error=str(exc))

    def head_witness(self) -> tuple[int, str] | None:
        """(seq, hash) from the HEAD file: an entry the journal must still contain unchanged
        (seq 0 and ``GENESIS`` for a vault that had no entry yet). StateError if unreadable."""
        path = self.root / HEAD_FILE
        try:
            text = path.read_bytes().decode("ascii")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            text = "(not ASCII)"
        seq, _, digest = text.strip().partition(" ")
        if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise StateError(
                f"{path}: not a HEAD witness (expected 'SEQ SHA256', found {text[:80]!r})"
            )
        return int(seq), digest

    def tamper_notes(self) -> list[str]:
        """What ``_check_witness`` found wrong with HEAD before an append, one note a line."""
        try:
            text = (self.root / TAMPER_FILE).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def _check_witness(self, tx: Transaction) -> None:
        """Before appending: HEAD must name an entry the journal holds unchanged. A brand-new
        vault (no entry, no HEAD) gets the GENESIS witness. A missing or broken HEAD is noted in
        ``TAMPERED`` (the append then rewrites HEAD, which would otherwise hide the damage)."""
        head = tx.journal_head(self.tenant)
        try:
            witness = self.head_witness()
        except StateError as exc:
            self._note_tampering(str(exc))
            return
        if witness is None:
            if head is None:
                private_dir(self.root)
                write_durably(self.root / HEAD_FILE, f"0 {journal.GENESIS}\n".encode("ascii"))
            else:
                self._note_tampering(f"HEAD missing while the journal has {head.seq} entries")
            return
        seq, digest = witness
        if seq == 0 and digest == journal.GENESIS:
            return
        named = tx.journal_row(self.tenant, seq)
        if named is None or named.hash != digest:
            last = head.seq if head else 0
            self._note_tampering(
                f"HEAD names entry {seq}, which the journal (ending at {last}) "
                + ("does not hold" if named is None else "holds with another hash")
            )

    def _note_tampering(self, note: str) -> None:
        event("vault.tampered", level=logging.ERROR, vault=str(self.root), problem=note)
        if note in self.tamper_notes():
            return  # seen before this batch's HEAD was rewritten (archive, then action)
        private_dir(self.root)
        fd = os.open(self.root / TAMPER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{note}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self, row: JournalRow) -> None:
        # Written after the commit: it may lag the journal (a crash in between), never lead it.
        private_dir(self.root)
        write_durably(self.root / HEAD_FILE, f"{row.seq} {row.hash}\n".encode("ascii"))
