"""Items and the identities pulled out of their headers or stanza.

Contracts:
- An ``Item`` carries the raw bytes exactly as the source received them; nothing changes them.
- Reading identities never raises on bad input: a message with no From, broken MIME, 8-bit or
  NUL bytes in its headers, or no header/body separator still yields whatever identities can be
  read (possibly none), so the item can be decided on and archived.
- Only the header section is parsed (at most ``HEADER_SCAN_LIMIT`` bytes), so a 50 MB message
  costs no more to decide than a small one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import getaddresses

# Postfix's header_size_limit is 100 KiB; we read ten times that before giving up on headers.
HEADER_SCAN_LIMIT = 1024 * 1024

# Header fields whose addresses say who is reaching the victim (RFC 5322 3.6.2, 3.6.6; RFC 5321).
IDENTITY_HEADERS = ("From", "Sender", "Reply-To", "Return-Path", "Resent-From", "Resent-Sender")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$", re.DOTALL)
# Last resort for headers that the RFC 5322 parser cannot read: anything that looks like an address.
_LOOSE_ADDRESS = re.compile(r"[^\s<>(),;:\"\[\]]+@[^\s<>(),;:\"\[\]@]+")


class Channel(enum.StrEnum):
    MAIL = "mail"
    XMPP = "xmpp"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One claim of who sent an item.

    ``source`` is where it was read: a header name (``From``, ``Reply-To`` ...), ``envelope``
    for the SMTP MAIL FROM, or ``jid`` for an XMPP sender. ``address`` is the addr-spec as found
    (not yet normalised); ``display_name`` the decoded phrase, if any.
    """

    source: str
    address: str | None = None
    display_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a person needs to recognise an item in a list: never used for deciding."""

    subject: str = ""
    message_id: str = ""
    date: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One message or stanza on its single path through the pipeline.

    ``source_ref`` lets the source find the item again to act on it (a Maildir file name,
    an IMAP folder/UIDVALIDITY/UID, an SMTP queue id). ``received_at`` is when guardmail saw it.
    ``meta`` holds source-specific facts kept with the evidence (IMAP flags, envelope, ...).
    """

    raw: bytes
    channel: Channel
    tenant: str
    account: str
    source_ref: str
    received_at: datetime
    identities: tuple[Identity, ...]
    summary: Summary = field(default_factory=Summary)
    meta: tuple[tuple[str, str], ...] = ()
    dedupe_scope: str | None = None  # the same bytes archive once per scope (default: source_ref)


def header_section(raw: bytes) -> bytes:
    """The bytes before the first empty line (all of them, up to the scan limit, if none)."""
    window = raw[:HEADER_SCAN_LIMIT]
    end = _HEADER_END.search(window)
    return window[: end.start()] if end else window


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """Unfolded (name, value) pairs of the header section, in order.

    Values are decoded as UTF-8 (RFC 6532) with undecodable bytes replaced and NUL removed, so a
    hostile header cannot make the parse fail. Lines that are neither a field nor a continuation
    are skipped.
    """
    fields: list[tuple[bytes, bytearray]] = []
    for line in _LINE_SPLIT.split(header_section(raw)):
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].extend(line)
            continue
        m = _FIELD.match(line)
        if m:
            fields.append((m.group(1), bytearray(m.group(2))))
    return [
        (
            name.decode("ascii", "replace"),
            bytes(value).replace(b"\x00", b"").decode("utf-8", "replace").strip(),
        )
        for name, value in fields
    ]


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words; on any decoding trouble return the text as it is."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        return value


def _addresses(value: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of an address-list header value."""
    try:
        pairs = [(name, addr) for name, addr in getaddresses([value]) if name or addr]
    except (ValueError, IndexError, TypeError):
        pairs = []
    if any("@" in addr for _, addr in pairs):
        return pairs
    # The strict parser found no address: fall back to anything address-shaped, so odd quoting
    # cannot hide a sender, while keeping any display name the parser did find.
    loose = [("", addr) for addr in _LOOSE_ADDRESS.findall(value)]
    names = [(name, "") for name, _ in pairs if name]
    return names + loose


def mail_identities(raw: bytes, *, envelope_sender: str | None = None) -> tuple[Identity, ...]:
    """Every sender identity a mail message claims, in header order, then the envelope sender."""
    wanted = {h.lower(): h for h in IDENTITY_HEADERS}
    found: list[Identity] = []
    for name, value in header_fields(raw):
        canonical = wanted.get(name.lower())
        if canonical is None:
            continue
        for display, addr in _addresses(value):
            decoded = decode_words(display).strip() if display else ""
            found.append(
                Identity(source=canonical, address=addr or None, display_name=decoded or None)
            )
    if envelope_sender:
        found.append(Identity(source="envelope", address=envelope_sender))
    return tuple(found)


def mail_summary(raw: bytes) -> Summary:
    """Subject, Message-ID and Date as a person would read them (first occurrence of each)."""
    first: dict[str, str] = {}
    for name, value in header_fields(raw):
        first.setdefault(name.lower(), value)
    return Summary(
        subject=" ".join(decode_words(first.get("subject", "")).split())[:500],
        message_id=first.get("message-id", "")[:500],
        date=first.get("date", "")[:200],
    )


def mail_item(
    raw: bytes,
    *,
    tenant: str,
    account: str,
    source_ref: str,
    received_at: datetime,
    envelope_sender: str | None = None,
    meta: tuple[tuple[str, str], ...] = (),
    dedupe_scope: str | None = None,
) -> Item:
    """An Item for a mail message, with its identities and summary read from ``raw``."""
    return Item(
        raw=raw,
        channel=Channel.MAIL,
        tenant=tenant,
        account=account,
        source_ref=source_ref,
        received_at=received_at,
        identities=mail_identities(raw, envelope_sender=envelope_sender),
        summary=mail_summary(raw),
        meta=meta,
        dedupe_scope=dedupe_scope,
    )
