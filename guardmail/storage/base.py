"""The storage seam: checkpoints, the evidence journal, the warning ledger, the copies the SMTP
filter has relayed, the signed tree heads and their timestamp tokens, alias features.

One small interface with two backends: SQLite (embedded default) and PostgreSQL (several nodes).
Transactions are owned by the caller: every read and write goes through a ``Transaction`` obtained
from ``Storage.transaction()``, which commits durably on a clean exit and rolls back on an
exception. No SQL lives outside ``guardmail/storage/``.

Rows are keyed by tenant: one tenant never reads another's rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from guardmail.errors import GuardmailError


class StorageUnavailable(GuardmailError):
    """The database could not complete a transaction (locked too long, disk full, I/O error)."""


class StorageClosed(StorageUnavailable):
    """The storage was closed (the daemon is stopping): a worker thread still running when it
    was (the timestamper's TSA request) cannot read or write any more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalRow:
    """One journal entry as stored. ``body`` is the canonical JSON that ``hash`` covers."""

    tenant: str
    seq: int
    kind: str
    body: str
    prev_hash: str
    hash: str
    sha256: str | None = None
    source_ref: str | None = None
    scope: str | None = None  # dedupe scope: the same bytes archive once per scope


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeHeadRow:
    """A signed tree head of the tenant's journal log (guardmail.vault.treelog): the Merkle root
    over its first ``tree_size`` entries, when it was signed, and the Ed25519 signature (hex)."""

    tenant: str
    tree_size: int
    root_hash: str  # hex
    time: str  # ISO 8601
    signature: str  # hex


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampRow:
    """An RFC 3161 timestamp token over a signed tree head (guardmail.vault.timestamps): the
    TSA's reply as received (DER), the time it vouches for, and the root certificate(s) (PEM)
    it was checked against when it arrived."""

    tenant: str
    tree_size: int  # the head it stamps
    token: bytes  # the TimeStampResp, DER
    gen_time: str  # ISO 8601, from the token
    tsa_url: str
    ca_pem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """How far a source has handled a folder: every UID up to ``last_uid`` is done."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningRow:
    """The ledger's record of one offender's warning (one row per tenant and offender, ever).

    ``state``: ``sending`` (intent durable, outcome not recorded: if no process is sending,
    the outcome is unknown), ``sent``, ``failed`` (certainly not accepted by the server), or
    ``marked_sent`` (the person confirmed it was sent).
    """

    tenant: str
    offender: str
    state: str
    recipient: str
    message_id: str
    sha256: str
    started_at: str
    finished_at: str = ""
    detail: str = ""
    attempts: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OffenderIdRow:
    """An offender's stable id for a tenant (guardmail.core.offender_ids): the entry's last-seen
    name (case-folded) and identities (one per line), and when and as whom it was first seen."""

    tenant: str
    id: str
    name: str
    identities: str
    first_name: str
    first_seen: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasFeaturesRow:
    """The alias linker's features (guardmail.core.alias_features, as JSON) of one archived
    item of ``offender``: written when the pipeline archives it, read when the daemon starts
    or reloads, never rebuilt from the blobs at decision time."""

    tenant: str
    offender: str
    sha256: str
    seen_at: str
    features: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimKeyRow:
    """A DKIM key record as fetched (guardmail.vault.dkimcheck): the TXT strings joined, kept once
    per tenant, selector, domain and SHA-256 of the record; when and through which resolver it
    was first fetched."""

    tenant: str
    selector: str
    domain: str
    record_sha256: str
    record: bytes
    fetched_at: str
    resolver: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimResultRow:
    """One signature of an archived item as checked at receipt: a DKIM-Signature (``kind``
    ``dkim``) or an ARC set's message signature or seal (``arc-ams``, ``arc-seal``). ``result``
    is pass, fail, temperror (DNS did not answer), permerror (no usable key or signature) or
    skipped (over a bound); ``key_sha256`` names the key snapshot used, if one was fetched."""

    tenant: str
    seq: int
    idx: int
    kind: str
    domain: str
    selector: str
    algorithm: str
    result: str
    reason: str
    key_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptCheckRow:
    """What was checked of an archived item's authenticity after it was archived: when, through
    which resolver, the ARC chain's result, and the trusted server's Authentication-Results."""

    tenant: str
    seq: int
    sha256: str
    checked_at: str
    resolver: str
    arc_result: str
    arc_reason: str
    authserv_id: str
    auth_results: str  # the topmost Authentication-Results field of authserv_id, or ""
    note: str = ""


class Transaction(Protocol):
    def journal_head(self, tenant: str) -> JournalRow | None:
        """The last entry of the tenant's journal, locked against concurrent appends."""
        ...

    def journal_insert(self, row: JournalRow) -> None: ...

    def journal_insert_many(self, rows: Sequence[JournalRow]) -> None:
        """Store the rows, in order, in as few statements as the backend allows (a vault group's
        entries: each statement a thread makes gives up the GIL, ``guardmail.vault.group``)."""
        ...

    def journal_rows(
        self, tenant: str, *, kind: str | None = None, after_seq: int = 0
    ) -> Iterator[JournalRow]:
        """The tenant's entries in seq order (only ``kind`` when given)."""
        ...

    def journal_row(self, tenant: str, seq: int) -> JournalRow | None: ...

    def tree_head_last(self, tenant: str) -> TreeHeadRow | None:
        """The tenant's signed tree head with the largest tree size, if any."""
        ...

    def tree_head_insert(self, row: TreeHeadRow) -> None: ...

    def tree_heads(self, tenant: str) -> Iterator[TreeHeadRow]:
        """The tenant's signed tree heads, smallest tree first."""
        ...

    def timestamp_insert(self, row: TimestampRow) -> None:
        """Store a token (one per head: a second for the same head is ignored)."""
        ...

    def timestamps(self, tenant: str) -> Iterator[TimestampRow]:
        """The tenant's timestamp tokens, smallest tree first."""
        ...

    def timestamp_last(self, tenant: str) -> TimestampRow | None:
        """The tenant's token over its largest stamped tree, if any."""
        ...

    def find_archived(self, tenant: str, sha256: str, scope: str) -> JournalRow | None:
        """The ``archived`` entry for these bytes within this dedupe scope, if any."""
        ...

    def find_archived_many(
        self, tenant: str, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], JournalRow]:
        """``find_archived`` of each (sha256, scope) at once: the first ``archived`` entry of
        each key the journal holds (keys it does not hold are absent)."""
        ...

    def checkpoint(self, tenant: str, source: str, folder: str) -> Checkpoint | None: ...

    def warning(self, tenant: str, offender: str) -> WarningRow | None:
        """The ledger row for this offender (key: its id, see guardmail.core.offender_ids; rows
        from before ids were keyed by the name case-folded), if any."""
        ...

    def delete_warning(self, tenant: str, offender: str) -> None:
        """Remove the ledger row under this key (only to re-key it, in the same transaction)."""
        ...

    def offender_ids(self, tenant: str) -> list[OffenderIdRow]:
        """The tenant's offender id table, oldest first."""
        ...

    def put_offender_id(self, row: OffenderIdRow) -> None:
        """Insert or replace the row for (row.tenant, row.id)."""
        ...

    def warnings(self, tenant: str) -> list[WarningRow]: ...

    def put_warning(self, row: WarningRow) -> None:
        """Insert or replace the row for (row.tenant, row.offender)."""
        ...

    def set_checkpoint(self, tenant: str, source: str, folder: str, point: Checkpoint) -> None: ...

    def tenants(self) -> list[str]: ...

    def cursor(self, tenant: str, source: str, name: str) -> str | None:
        """A source's own position or state under ``name``, as it wrote it (opaque text).

        For positions that are not (UIDVALIDITY, UID) pairs: an XMPP archive (MAM) id, the
        server blocklist entries guardmail manages.
        """
        ...

    def set_cursor(self, tenant: str, source: str, name: str, value: str) -> None: ...

    def put_alias_features(self, row: AliasFeaturesRow) -> None:
        """Insert or replace the row for (row.tenant, row.offender, row.sha256)."""
        ...

    def alias_features(self, tenant: str) -> list[AliasFeaturesRow]:
        """The tenant's alias features, oldest first."""
        ...

    def put_not_alias(self, tenant: str, offender: str, address: str, at: str) -> None:
        """Remember that ``address`` is not an alias of ``offender`` (a dismissed review)."""
        ...

    def not_alias_of(self, tenant: str, address: str) -> list[str]:
        """The offenders ``address`` was found not to be an alias of."""
        ...

    def find_archived_ref(self, tenant: str, source_ref: str) -> JournalRow | None:
        """The first ``archived`` entry with this source reference, if any.

        For items whose bytes differ between deliveries of the same thing: an XMPP message live
        and later from the server archive carries one server id but different wrappers.
        """
        ...

    def find_actions(self, tenant: str, sha256: str) -> list[JournalRow]:
        """The ``action`` entries for these bytes (whichever archived entry they answer)."""
        ...

    def relayed(self, tenant: str, queue_id: str, sha256: str) -> set[str]:
        """The copies of this queued message (queue ID, SHA-256 of its bytes) the SMTP filter's
        next hop has accepted (``rcpt:ADDRESS``, ``quarantine:ADDRESS``)."""
        ...

    def add_relayed(
        self, tenant: str, queue_id: str, sha256: str, copies: Collection[str], at: str
    ) -> None:
        """Remember more accepted copies of that message, ``at`` (ISO 8601 UTC) now."""
        ...

    def forget_relayed(self, tenant: str, before: str) -> int:
        """Forget the copies remembered before ``before`` (ISO 8601 UTC); how many rows."""
        ...

    def all_relayed(self, tenant: str) -> list[tuple[str, str, str, str]]:
        """Every remembered copy: (queue ID, SHA-256, copy, at), oldest first."""
        ...

    def put_receipt_check(
        self, check: ReceiptCheckRow, results: Sequence[DkimResultRow], keys: Sequence[DkimKeyRow]
    ) -> None:
        """Store an item's check (replacing an earlier one of the same seq) and its signatures'
        results; each key record is kept once (an existing snapshot keeps its first fetch)."""
        ...

    def receipt_check(self, tenant: str, seq: int) -> ReceiptCheckRow | None: ...

    def unchecked_archives(self, tenant: str, *, channel: str, limit: int) -> list[tuple[int, str]]:
        """(seq, sha256) of the tenant's archived entries of ``channel`` that have no receipt
        check recorded, oldest first, at most ``limit``."""
        ...

    def dkim_results(self, tenant: str, seq: int) -> list[DkimResultRow]:
        """The item's signature results in ``idx`` order."""
        ...

    def dkim_key(self, tenant: str, record_sha256: str) -> DkimKeyRow | None: ...


class Storage(Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction: it takes the database's write lock at its start."""
        ...

    def read(self) -> AbstractContextManager[Transaction]:
        """A consistent read-only snapshot that takes no write lock, so that readers (status,
        evidence list, the warning's recipients) never hold up the daemon's writers. Writing
        through it is an error."""
        ...

    def close(self) -> None:
        """Close the database; any transaction asked for later raises ``StorageClosed``."""
        ...
