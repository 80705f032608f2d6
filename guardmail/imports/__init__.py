"""Evidence from before guardmail: items imported from files, folders, servers and chat logs.

A reader (``files``, ``gajim``, and ``guardmail.channels.imap.fetch`` for a server) turns a
source into ``Found`` items; ``engine.run_import`` judges each by the same rules as live items
(``Pipeline.judge``) and archives the offenders' (with ``everything``, all of them) byte-exact,
with their provenance, journaled as imported and never acted on.

Contracts, for every reader:
- The source is only read: nothing in it is moved, deleted, flagged or rewritten.
- Every parse is bounded: an item is held in memory only up to ``max_item`` bytes (a larger one
  is hashed as it streams past and reported as skipped, never archived in part); a line is read
  in pieces, so a 1 GB line costs no more memory than a short one.
- ``Found.key`` names the item within its source for ever (an mbox byte offset with the SHA-256
  of the bytes, a Maildir unique name with the SHA-256, an IMAP UIDVALIDITY/UID): the engine
  records it durably in the same transaction as the item's entry, so a run killed at any
  instant and started again archives nothing twice.

Errors raised on purpose here (a GuardmailError; it belongs in the tree of guardmail.errors):

    UnreadableSource   the source named is missing, unreadable, or not of the kind given
"""

from __future__ import annotations

from dataclasses import dataclass

from guardmail.core.item import Channel, Identity, Summary
from guardmail.errors import GuardmailError

# The largest item held in memory (and archived): as much as a report may carry.
MAX_ITEM_BYTES = 100 * 1024 * 1024


class UnreadableSource(GuardmailError):
    """The source to import is missing, unreadable, or not of the kind the command names."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One item of a source, as read.

    ``raw`` is None when the item is larger than the reader's bound (``size`` and ``sha256``
    are still exact). ``position`` is how many bytes of the source have been read after it
    (progress); ``meta`` is kept with the evidence (the mbox From_ line, the IMAP flags ...).
    ``identities`` and ``summary`` are given by readers of items that are no mail message (a
    chat log row); for mail they are None and read from the headers.
    """

    key: str
    raw: bytes | None
    size: int
    sha256: str
    position: int
    channel: Channel = Channel.MAIL
    meta: tuple[tuple[str, str], ...] = ()
    identities: tuple[Identity, ...] | None = None
    summary: Summary | None = None


__all__ = ["MAX_ITEM_BYTES", "Found", "UnreadableSource"]
