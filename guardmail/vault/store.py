"""Blobs stored by SHA-256, and the Vault that archives an item before anything acts on it.

Contracts:
- ``Vault.put`` and ``Vault.put_many`` return only when the raw bytes are durable: each blob
  written to a temp file, fsync'd, renamed into place, its directory fsync'd (once per batch;
  a batch of ``blobs.SYNCFS_MIN`` new blobs or more: two ``syncfs(2)`` of the vault's
  filesystem instead, after the writes and after the renames, see ``vault/blobs.py``; for a
  large group, the same code run by a blob writer child, ``vault/blobwriter.py``), and
  the ``archived`` journal entries committed (SQLite synchronous=FULL), a batch's entries in
  one transaction, stored by a few statements whatever its size (one look for earlier copies,
  multi-row INSERTs, the new entries not read back for the tree head). Any failure raises
  ``VaultUnavailable`` and journals nothing of the batch: at most some blobs are on disk
  without an entry, which a retry finds in place (same name, same bytes) and journals then.
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
  vault directory (0600) by ``seal`` at start-up, which also seals a journal from before the
  log, or the first time one is needed; at start-up the key file is made and checked without
  cryptography (~7 MB), which is imported when a head is first signed.
- Readers see journal rows through ``rows``/``row``, whose index columns come from the hashed
  body (``journal.indexed``): editing a column changes no answer, and ``evidence verify`` names it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardmail import faults
from guardmail.errors import StateError, VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import (
    JournalRow,
    Storage,
    StorageClosed,
    StorageUnavailable,
    TimestampRow,
    Transaction,
)
from guardmail.storage.files import private_dir, remove_stale_temps, tighten
from guardmail.vault import journal, treelog
from guardmail.vault.blobs import BlobStore
from guardmail.vault.blobwriter import BlobWriter
from guardmail.vault.entries import Archive, Receipt, Record, Within, describe, digests
from guardmail.vault.head import HEAD_FILE, HeadWitness
from guardmail.vault.reads import VaultReads
from guardmail.vault.signing import KEY_FILE, make_key, make_key_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Archive", "Receipt", "Record", "Vault", "Within"]


class Vault(VaultReads, HeadWitness):
    """One tenant's evidence: blobs on disk, journal in storage, a HEAD witness file."""

    def __init__(self, root: Path, storage: Storage, tenant: str) -> None:
        self.root = root
        self.tenant = tenant
        self.storage = storage
        self.blobs = BlobStore(root / "blobs")
        self._key: Ed25519PrivateKey | None = None
        # The key file as it was when found damaged (inode, size, mtime): noted once, not read
        # and noted again at each append until the file changes (restored by the operator).
        self._damaged: tuple[int, int, int] | None = None

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
        done = self.commit(archives, now=now, witness=witness, within=within)
        return [r for r in done if isinstance(r, Receipt)]

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
        done = self.commit(records, now=now, witness=True)
        return [r for r in done if isinstance(r, JournalRow)]

    def commit(
        self,
        entries: Sequence[Archive | Record],
        *,
        now: datetime,
        witness: bool,
        point: str = "vault.blob",
        within: Within | None = None,
        writer: BlobWriter | None = None,
    ) -> list[Receipt | JournalRow]:
        """``put_many`` and ``record_many`` in one: every Archive's blob durable (directories
        fsync'd once each), then all entries journaled in order in one transaction with one
        signed tree head, then (``witness``) the HEAD witness once. A Receipt per Archive and a
        JournalRow per Record, in order; ``VaultUnavailable`` with nothing journaled if not.
        ``guardmail.vault.group`` commits concurrent requests together through this, or, for a
        group of several vaults on one storage, through its two halves (``write_blobs``, then
        ``append`` inside the group's one transaction); its crash ``point``, reached between the
        blobs' fsyncs and the transaction, is ``vault.group``.
        ``within``: as for ``put_many`` (a transaction is made for it even with no entries).
        ``writer``: the blob files are written by that child process (``BlobStore.put_many``)."""
        if not entries and within is None:
            return []
        shas = digests(entries)
        try:
            self.write_blobs(entries, shas, writer=writer)
            if any(isinstance(e, Archive) for e in entries):
                faults.reached(point)
            with self.storage.transaction() as tx:
                done, last = self.append(tx, entries, shas, now=now, within=within)
            if witness and last is not None:
                self._write_head(last)
        except (OSError, StorageUnavailable, StateError) as exc:
            raise self.unavailable(entries, shas, exc) from exc
        return done

    def unavailable(
        self, entries: Sequence[Archive | Record], shas: Sequence[str], exc: BaseException
    ) -> VaultUnavailable:
        """The error of a commit of ``entries`` that failed with ``exc``."""
        return VaultUnavailable(f"vault {self.root} cannot {describe(entries, shas)}: {exc}")

    def write_blobs(
        self,
        entries: Sequence[Archive | Record],
        shas: Sequence[str],
        *,
        writer: BlobWriter | None = None,
    ) -> None:
        """The first half of ``commit``: every Archive's blob durable in this vault's own blob
        store (``shas``: ``entries.digests``). OSError or StateError if not. A vault's first
        archive also makes or loads its key here, not in ``append``: that is inside the shared
        transaction, and making a key costs 3 fsyncs that every tenant's commit would wait for
        (a records-only first commit still makes it there)."""
        archives = [
            (e.raw, sha) for e, sha in zip(entries, shas, strict=True) if isinstance(e, Archive)
        ]
        if archives:
            self.blobs.put_many(archives, writer=writer)
            self._signing_key()

    def append(
        self,
        tx: Transaction,
        entries: Sequence[Archive | Record],
        shas: Sequence[str],
        *,
        now: datetime,
        within: Within | None = None,
    ) -> tuple[list[Receipt | JournalRow], JournalRow | None]:
        """The second half of ``commit``, inside ``tx`` (which the caller commits; its blobs
        durable before): the HEAD checked, every entry chained after this tenant's head and
        stored, ``within`` run, one signed tree head over this tenant's journal. The results in
        order and the last row appended (None: nothing), for the HEAD witness written after the
        commit. OSError, StateError or StorageUnavailable if not (roll ``tx`` back then)."""
        self._check_witness(tx)
        # The group's entries are chained here and stored by a few statements (one look for
        # earlier copies, one multi-row INSERT per chunk), not three SQLite calls an entry:
        # each gives up the GIL beside the busy event loop (issue 28).
        head = tx.journal_head(self.tenant)
        keys = [
            (sha, e.source_ref if e.scope is None else e.scope)
            for e, sha in zip(entries, shas, strict=True)
            if isinstance(e, Archive)
        ]
        earlier = tx.find_archived_many(self.tenant, keys) if keys else {}
        done: list[Receipt | JournalRow] = []
        rows: list[JournalRow] = []
        last: JournalRow | None = None
        by_archive: dict[int, Receipt] = {}  # id(Archive) -> its receipt, for ``Record.of``
        for entry, sha in zip(entries, shas, strict=True):
            if isinstance(entry, Record):
                fields, about = entry.fields, entry.sha256
                if entry.of is not None:
                    of = by_archive[id(entry.of)]  # KeyError: not earlier here, a bug
                    fields, about = {"archived_seq": of.seq, **fields}, of.sha256
                head = journal.following(
                    head,
                    tenant=self.tenant,
                    kind=entry.kind,
                    fields=fields,
                    now=now,
                    sha256=about,
                    source_ref=entry.source_ref,
                )
                rows.append(head)
                done.append(head)
                continue
            scope = entry.source_ref if entry.scope is None else entry.scope
            # Also an earlier item of this same batch: identical bytes twice in one folder
            # archive once, as they would one after the other.
            copy = earlier.get((sha, scope))
            if copy is not None:
                receipt = Receipt(sha256=sha, seq=copy.seq, duplicate=True)
                by_archive[id(entry)] = receipt
                done.append(receipt)
                continue
            fields = dict(entry.metadata)
            fields["size"] = len(entry.raw)
            head = journal.following(
                head,
                tenant=self.tenant,
                kind="archived",
                fields=fields,
                now=now,
                sha256=sha,
                source_ref=entry.source_ref,
                scope=scope,
            )
            rows.append(head)
            earlier[(sha, scope)] = head
            by_archive[id(entry)] = receipt = Receipt(sha256=sha, seq=head.seq)
            done.append(receipt)
        if rows:
            tx.journal_insert_many(rows)
            last = rows[-1]
        if within is not None:
            receipts = [d for d in done if isinstance(d, Receipt)]
            last = within(tx, receipts) or last
        if last is not None:
            self._grow(tx, now, rows)
        return done, last

    def write_head(self, row: JournalRow) -> None:
        """The HEAD witness naming ``row``, after the commit that made it. VaultUnavailable if
        it cannot be written (the entries stay committed; HEAD lags until the next one)."""
        try:
            self._write_head(row)
        except (OSError, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot write HEAD: {exc}") from exc

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

    def seal(self, *, now: datetime, start: bool = False) -> None:
        """Sign a tree head over the entries no head covers yet (a journal from before the log,
        at the first start), making the tenant's key if it has none. VaultUnavailable if not.
        ``start`` (a daemon's start): the key file is made if missing and checked (a damaged
        one noted, as at an append) without importing cryptography (``signing.make_key_file``),
        and loaded only to sign: a daemon that archives nothing never imports it (issue 27:
        ~7 MB of an ISP's milter). Made at the start, not at the first archive: 3 fsyncs the
        first offender item would wait for, or a background thread beside the first minutes'
        mail (both measured slower; bench/README.md, mem28)."""
        try:
            ready = self._key_file() if start else self._signing_key() is not None
            if not ready:
                return  # a damaged key: noted, nothing signed (as at an append)
            with self.storage.transaction() as tx:
                self._grow(tx, now)
        except (OSError, StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot sign a tree head: {exc}") from exc

    def _key_file(self) -> bool:
        """The key file made if missing (``signing.make_key_file``: without cryptography) and
        checked, not loaded; False if it is not a key (noted). OSError if it cannot be made."""
        if self._key is None:
            try:
                make_key_file(self.root, load=False)
            except StateError as exc:
                self._key_damaged(exc)
                return False
        return True

    def _signing_key(self) -> Ed25519PrivateKey | None:
        """The tenant's key, loaded or made now if this vault has none yet; None if the file is
        not a key (noted). OSError if it cannot be made."""
        if self._key is None and (self._damaged is None or self._damaged != self._key_stat()):
            try:
                self._key = make_key(self.root)
            except StateError as exc:
                self._key_damaged(exc)
        return self._key

    def _key_stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.root / KEY_FILE).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _key_damaged(self, exc: StateError) -> None:
        # A damaged key must not stop archiving (items would wait in place for ever): the
        # entries are journaled unsigned, and that is noted and reported, once for each state
        # of the file (an append asks for the key twice: its blobs, then its tree head).
        self._damaged = self._key_stat()
        self._note_tampering(f"{exc}; entries are journaled without a signed tree head")

    def _grow(self, tx: Transaction, now: datetime, appended: Sequence[JournalRow] = ()) -> None:
        treelog.grow(tx, tenant=self.tenant, key=self._signing_key, now=now, appended=appended)

    def keep_timestamp(self, row: TimestampRow) -> None:
        """Store a checked token beside its head (``guardmail.vault.timestamps``).
        ``StorageClosed`` if the storage was closed meanwhile (the daemon is stopping)."""
        try:
            with self.storage.transaction() as tx:
                tx.timestamp_insert(row)
        except StorageClosed:
            raise
        except (StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot keep a timestamp: {exc}") from exc

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

    def prepare(self) -> None:
        """At a daemon's start, make a brand-new vault's GENESIS HEAD, which its first archive
        would otherwise write (2 fsyncs) while the item waits (a milter's client waits for the
        answer): ``_check_witness`` in a transaction, as before an append, so never beside a
        commit. Nothing for a vault that has a HEAD. Best effort: a failure is logged, and the
        first archive writes it as before. (The blob directory is left to the first archive, 1
        fsync: the tests make a vault fail by standing a file where it would be made.)"""
        try:
            if not (self.root / HEAD_FILE).exists():
                with self.storage.transaction() as tx:
                    self._check_witness(tx)
        except StorageClosed:
            pass  # the daemon is stopping: the next start prepares it
        except (OSError, StorageUnavailable, StateError) as exc:
            event("vault.unprepared", level=logging.WARNING, vault=str(self.root), error=str(exc))
