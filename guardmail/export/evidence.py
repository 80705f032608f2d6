"""What an export holds: the operator's criteria, and the items, warnings, notes and custody
records selected for the bundle (guardmail.export.selection makes them; the writers read them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from guardmail.storage.base import JournalRow
from guardmail.vault.notes import Note, NoteFile


@dataclass(frozen=True, slots=True, kw_only=True)
class Criteria:
    """What the operator asked for. Empty ``offenders`` means all of them."""

    offenders: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportItem:
    """One archived item as exported: its journal facts and its name in the bundle."""

    index: int  # 1-based position in the bundle
    seq: int
    sha256: str
    size: int
    file: str  # bundle-relative, e.g. items/0001-20261125T120000Z-seq17.eml
    received_at: datetime  # UTC
    archived_at: str
    channel: str
    account: str
    source_ref: str
    offender: str
    rule: str
    header: str
    action: str
    done: str  # what the source did, from the matching ``action`` row ("" if none recorded)
    subject: str
    message_id: str
    date: str
    looks_like: tuple[str, ...] = ()  # the matches' look-alike findings, in words
    # "imported from FILE at TIME; not received by guardmail" (``guardmail import``); "" for
    # an item guardmail received itself: the report keeps the two apart.
    imported: str = ""
    # The person's side and group chats (guardmail/kept.py): ``outgoing`` for the person's own
    # message to the offender; the room of a group-chat item; for a room's messages kept as the
    # context of an offender's, that item's journal seq (such an item is nobody's: no offender).
    direction: str = ""
    room: str = ""
    context_of: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SentWarning:
    """A journaled ``warning`` entry: its blob holds the exact bytes sent."""

    seq: int
    sha256: str
    file: str
    offender: str
    to: str
    sent_at: str
    message_id: str
    channel: str = "email"
    """email (the file is the message, .eml) or xmpp (the stanza, .xml)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AbuseSent:
    """A journaled ``abuse_report`` entry: a complaint sent to an offender's provider."""

    seq: int
    time: datetime
    offender: str
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportNote:
    """A case-journal note in the export, and its attached files' names in the bundle."""

    note: Note
    files: tuple[tuple[str, NoteFile], ...]  # (bundle-relative name, the file as journaled)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyEntry:
    """A chain-of-custody record about the exported evidence (guardmail.vault.custody)."""

    seq: int
    time: datetime
    text: str  # what was done, by whom, in words


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    tenant: str
    criteria: Criteria
    offenders: tuple[str, ...]  # as journaled, in order of first appearance
    items: tuple[ExportItem, ...]
    warnings: tuple[SentWarning, ...]
    journal: tuple[JournalRow, ...]
    head: JournalRow | None  # the vault's last row when the selection was made
    shown: frozenset[int] = frozenset()  # seqs of ``journal`` rows exported with their bodies
    notes: tuple[ExportNote, ...] = ()
    abuse_reports: tuple[AbuseSent, ...] = ()  # sent about the exported offenders
    custody: tuple[CustodyEntry, ...] = ()  # views, exports, verifications, decisions

    def withheld(self, row: JournalRow) -> bool:
        """Whether ``row`` goes into the bundle as its hashes only (it is about someone else)."""
        return row.seq not in self.shown
