"""Items and the identities pulled out of their headers or stanza.

Contracts:
- An ``Item`` carries the raw bytes exactly as the source received them; nothing changes them.
- Reading is total: no byte sequence raises. A message with no From, broken MIME, broken
  encoded-words, comments nested past the parser's recursion limit, 8-bit or NUL bytes in its
  headers, bare CR or LF line ends, or no header/body separator still yields whatever identities
  can be read (possibly none), so the item can be decided on and archived. A header the strict
  parsers (the stdlib's, foreign code fed hostile input) give up on is read loosely instead:
  anything address-shaped counts. Such failures are named in the item's ``meta`` as
  ``("parse_error", "<Header>: <why>[; <Header>: <why> ...]")``.
- The work is bounded: only the header section is parsed (at most ``HEADER_SCAN_LIMIT`` bytes,
  headers.py), the strict address parser sees at most ``STRICT_LIMIT`` characters of one header
  and ``STRICT_BUDGET`` of one message, and the encoded-word decoder ``DECODE_LIMIT`` of one
  value; beyond that everything is read loosely, in linear time.
- What a reader is shown as the sender is an identity too, even when no server delivers from it
  (the Mailsploit class of spoofing): an address-shaped run in a decoded display name, or in the
  decoded encoded-words of a sender header, is read as an identity whose ``source`` says so
  (``From (display name)``, ``From (encoded word)``), after the header's own identities.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import getaddresses

from guardmail.core.headers import header_fields

# The stdlib's address parser is recursive and costs ~2.5 us a character: an honest sender header
# is far below one limit, a message's sender headers far below the other.
STRICT_LIMIT = 16 * 1024
STRICT_BUDGET = 256 * 1024
# A Subject or display name is shown in at most a few hundred characters.
DECODE_LIMIT = 4 * 1024
# At most this many parse errors are kept with an item (a message can repeat a broken header).
MAX_PARSE_ERRORS = 20

# Header fields whose addresses say who is reaching the victim (RFC 5322 3.6.2, 3.6.6; RFC 5321).
IDENTITY_HEADERS = ("From", "Sender", "Reply-To", "Return-Path", "Resent-From", "Resent-Sender")
# Header fields whose addresses say whom a message was written to (RFC 5322 3.6.3): the person's
# own messages in a Sent folder are judged by these (their recipients), never by their sender.
RECIPIENT_HEADERS = ("To", "Cc", "Bcc")

# Last resort for headers that the RFC 5322 parser cannot read: anything that looks like an
# address, i.e. a run of characters between these separators with an "@" inside (split, not
# searched for, so that it stays linear in the length of the header).
_LOOSE_SEPARATORS = re.compile(r"[\s<>(),;:\"\[\]]+")
# Decoded text can hold any control character; a client stops showing a name at a NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The form nearly every sender writes, "Display Name <local@domain>" or a bare addr-spec, with
# plain atoms only: read by one regex instead of the stdlib's character-at-a-time address
# parser, which is half the cost of reading a header section (a first scan reads thousands).
# It gives what ``getaddresses`` gives for it (tests/unit/test_item.py compares them on random
# strings); anything else (quotes, comments, groups, several addresses) goes to the stdlib.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_SIMPLE_ADDRESS = re.compile(
    rf"(?:(?:({_ATEXT}(?: {_ATEXT})*) ?)?<({_DOT_ATOM}@{_DOT_ATOM})>|({_DOT_ATOM}@{_DOT_ATOM}))"
)

# Where in a sender header an address that is no addr-spec of it was read (Identity.source is
# "<Header> (<where>)"); SOURCE_WHERE says it in words.
IN_DISPLAY_NAME = "display name"
IN_ENCODED_WORD = "encoded word"
_SOURCE_WHERE = {
    IN_DISPLAY_NAME: "an address in the display name of {header}",
    IN_ENCODED_WORD: "an address in an encoded word of {header}",
}


class Channel(enum.StrEnum):
    MAIL = "mail"
    XMPP = "xmpp"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One claim of who sent an item.

    ``source`` is where it was read: a header name (``From``, ``Reply-To`` ...), ``envelope``
    for the SMTP MAIL FROM, or ``jid`` for an XMPP sender; or, for an address shown to the
    reader but not an addr-spec of the header, ``<Header> (display name)`` or ``<Header>
    (encoded word)`` (``describe_source`` says it in words). ``address`` is the addr-spec as
    found (not yet normalised); ``display_name`` the decoded phrase, if any.
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


def describe_source(source: str) -> str:
    """Where an identity was read, for people: ``From (display name)`` is "an address in the
    display name of From"; a header name, ``envelope`` or ``jid`` is returned as it is."""
    header, sep, where = source.partition(" (")
    template = _SOURCE_WHERE.get(where.removesuffix(")")) if sep else None
    return template.format(header=header) if template else source


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words; on any decoding trouble return the text as it is."""
    return _decode(value)[0]


def _decode(value: str) -> tuple[str, str | None]:
    """``value`` with its encoded-words decoded (its first ``DECODE_LIMIT`` characters), and why
    that failed if it did (``value`` is then returned as it is)."""
    if "=?" not in value:
        return value, None
    try:
        return str(make_header(decode_header(value[:DECODE_LIMIT]))), None
    except Exception as exc:
        # The stdlib decoder fails in many ways on hostile input (HeaderParseError for bad
        # base64, LookupError for an unknown charset, ...): each one is a parse failure.
        return value, f"undecodable encoded-word ({_why(exc)})"


def _why(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "too deeply nested comments or groups"
    text = " ".join(str(exc).split())[:100]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _loose_addresses(value: str) -> list[str]:
    """Everything address-shaped in ``value``, in order: the fallback when parsing fails."""
    found = []
    for token in _LOOSE_SEPARATORS.split(value):
        token = token.rstrip("@")
        if token.rfind("@") > 0:
            found.append(token)
    return found


def simple_address(value: str) -> tuple[str, str] | None:
    """(display name, addr-spec) of ``value`` if it is one address of the plain form
    ``Name Words <local@domain>``, ``<local@domain>`` or ``local@domain`` (atoms only), as
    ``email.utils.getaddresses`` reads it; else None."""
    m = _SIMPLE_ADDRESS.fullmatch(value)
    if m is None:
        return None
    return (m.group(1) or "", m.group(2) or m.group(3))


class _Reader:
    """Reads one message's header fields: owns the strict parser's budget and the errors."""

    def __init__(self) -> None:
        self.budget = STRICT_BUDGET
        self.errors: list[str] = []

    def note(self, header: str, why: str | None) -> None:
        if why is None:
            return
        error = f"{header}: {why}"
        if error not in self.errors and len(self.errors) < MAX_PARSE_ERRORS:
            self.errors.append(error)

    def decode(self, header: str, value: str) -> str:
        text, why = _decode(value)
        self.note(header, why)
        return text

    def addresses(self, header: str, value: str) -> list[tuple[str, str]]:
        """(display name, addr-spec) pairs of an address-list header value."""
        pairs: list[tuple[str, str]] = []
        if len(value) > STRICT_LIMIT or len(value) > self.budget:
            self.note(header, f"too long for the address parser ({len(value)} characters)")
        else:
            self.budget -= len(value)
            try:
                simple = simple_address(value)
                pairs = (
                    [simple]
                    if simple is not None
                    else [(name, addr) for name, addr in getaddresses([value]) if name or addr]
                )
            except Exception as exc:
                # RecursionError on deep nesting, IndexError/ValueError on odd syntax: the
                # stdlib parser gave up; the loose reading below still finds the sender.
                self.note(header, f"{_why(exc)}; read loosely")
        if any("@" in addr for _, addr in pairs):
            return pairs
        # The strict parser found no address: fall back to anything address-shaped, so odd
        # quoting cannot hide a sender, while keeping any display name the parser did find.
        names = [(name, "") for name, _ in pairs if name]
        return names + [("", addr) for addr in _loose_addresses(value)]

    def identities(
        self,
        fields: list[tuple[str, str]],
        envelope_sender: str | None,
        headers: tuple[str, ...] = IDENTITY_HEADERS,
    ) -> tuple[Identity, ...]:
        wanted = {h.lower(): h for h in headers}
        found: list[Identity] = []
        for name, value in fields:
            canonical = wanted.get(name.lower())
            if canonical is None:
                continue
            # An undecodable byte (U+FFFD here) inside an address must not hide it: a client
            # shows it as a mark beside the address the victim recognises. Dovecot also serves
            # a NUL in a header as 0x80.
            value = value.replace("\ufffd", "")
            read: list[Identity] = []
            for display, addr in self.addresses(canonical, value):
                decoded = self.decode(canonical, display).strip() if display else ""
                read.append(
                    Identity(source=canonical, address=addr or None, display_name=decoded or None)
                )
            found += read
            found += self.hidden(canonical, value, read)
        if envelope_sender:
            found.append(Identity(source="envelope", address=envelope_sender))
        return tuple(found)

    def hidden(self, header: str, value: str, read: list[Identity]) -> list[Identity]:
        """Addresses a reader is shown in ``header`` beside its addr-specs (``read``): those in
        its decoded display names, then those only its decoded encoded-words hold."""
        seen = {i.address.casefold() for i in read if i.address}
        out: list[Identity] = []

        def add(where: str, text: str) -> None:
            for addr in _loose_addresses(_CONTROL.sub(" ", text)):
                if addr.casefold() not in seen:
                    seen.add(addr.casefold())
                    out.append(Identity(source=f"{header} ({where})", address=addr))

        for ident in read:
            if ident.display_name and "@" in ident.display_name:
                add(IN_DISPLAY_NAME, ident.display_name)
        if "=?" in value:
            # Encoded-words where RFC 2047 allows none (the whole value, an addr-spec) are
            # decoded by clients all the same; the decoder's failure is noted by its caller.
            decoded, why = _decode(value)
            if why is None:
                add(IN_ENCODED_WORD, decoded)
        return out

    def summary(self, fields: list[tuple[str, str]]) -> Summary:
        first: dict[str, str] = {}
        for name, value in fields:
            first.setdefault(name.lower(), value)
        return Summary(
            subject=" ".join(self.decode("Subject", first.get("subject", "")).split())[:500],
            message_id=first.get("message-id", "")[:500],
            date=first.get("date", "")[:200],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MailReading:
    """What the header section of a message says: its identities and summary, and
    ``parse_errors``, one ``"<Header>: <why>"`` for each header that had to be read loosely."""

    identities: tuple[Identity, ...]
    summary: Summary
    parse_errors: tuple[str, ...] = ()


def read_mail(raw: bytes, *, envelope_sender: str | None = None) -> MailReading:
    """Identities (as ``mail_identities``), summary and parse errors of ``raw``; never raises."""
    fields = header_fields(raw)
    reader = _Reader()
    identities = reader.identities(fields, envelope_sender)
    summary = reader.summary(fields)
    return MailReading(identities=identities, summary=summary, parse_errors=tuple(reader.errors))


def mail_identities(raw: bytes, *, envelope_sender: str | None = None) -> tuple[Identity, ...]:
    """Every sender identity a mail message claims, in header order, then the envelope sender."""
    return _Reader().identities(header_fields(raw), envelope_sender)


def mail_recipients(raw: bytes) -> tuple[Identity, ...]:
    """Every recipient a message names in To, Cc and Bcc, in header order, read as sender
    identities are (the same bounds and loose fallback; an identity's ``source`` is the header):
    what the person's own messages are judged by."""
    return _Reader().identities(header_fields(raw), None, RECIPIENT_HEADERS)


def mail_summary(raw: bytes) -> Summary:
    """Subject, Message-ID and Date as a person would read them (first occurrence of each)."""
    return _Reader().summary(header_fields(raw))


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
    """An Item for a mail message, with its identities and summary read from ``raw``; what
    could not be read strictly is appended to ``meta`` as one ``("parse_error", ...)`` pair,
    its errors joined by "; " (the evidence keeps ``meta`` as a mapping)."""
    reading = read_mail(raw, envelope_sender=envelope_sender)
    errors = reading.parse_errors
    return Item(
        raw=raw,
        channel=Channel.MAIL,
        tenant=tenant,
        account=account,
        source_ref=source_ref,
        received_at=received_at,
        identities=reading.identities,
        summary=reading.summary,
        meta=(*meta, ("parse_error", "; ".join(errors))) if errors else meta,
        dedupe_scope=dedupe_scope,
    )
