"""What a report shows of an item's bytes: its header fields, its sender, its first words.

Contracts:
- Never raises on hostile input: broken MIME, 8-bit or NUL bytes, no header/body separator, a
  stanza that is not well-formed XML all still yield whatever can be read.
- Display only: the bundle's item files, not these excerpts, are the evidence. Header values are
  unfolded and decoded as UTF-8 with replacement; at most ``MAX_FIELDS`` fields of at most
  ``MAX_VALUE`` characters each are kept, so one absurd message cannot swell the report.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from guardmail.core.headers import header_fields
from guardmail.core.item import decode_words, mail_identities
from guardmail.export.content import MAX_TEXT, Content, mail_content, sent_time
from guardmail.export.thumbs import Thumbs

MAX_FIELDS = 100
MAX_VALUE = 2000
FIRST_WORDS = 12

_STANZA_ATTR = re.compile(rb"""\b(from|to|type|id)\s*=\s*(?:'([^']*)'|"([^"]*)")""")
_MESSAGE_TAG = re.compile(rb"<(?:\w+:)?message\b[^>]*>")
_STANZA_BODY = re.compile(rb"<body(?:\s[^>]*)?>(.*?)</body>", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_DELAY = re.compile(rb"""<delay\b[^>]{0,500}?\bstamp\s*=\s*['"]([^'"]{1,40})['"]""")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Details:
    headers: tuple[tuple[str, str], ...]
    sender: str  # "Name <addr>" or the stanza's from
    first_words: str  # the start of the text, for items without a subject
    content: Content = Content()  # what the message says (content.py), bounded


def clean(text: str) -> str:
    """``text`` with control characters removed (they break PDF text and terminals)."""
    return _CONTROL.sub("", text)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _words(text: str) -> str:
    words = clean(text).split()
    tail = " \u2026" if len(words) > FIRST_WORDS else ""
    return " ".join(words[:FIRST_WORDS]) + tail


def _mail_text(raw: bytes) -> str:
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        text = part.get_content()
        if not isinstance(text, str):
            return ""
        if part.get_content_subtype() == "html":
            text = html.unescape(_TAG.sub(" ", text))
        return text
    except (ValueError, LookupError, UnicodeError, AssertionError, AttributeError, TypeError):
        # The stdlib parser has many ways to give up on hostile MIME; the report then shows
        # no first words, and the original file is in the bundle.
        return ""


def mail_details(
    raw: bytes, *, want_words: bool, bodies: bool = True, thumbs: Thumbs | None = None
) -> Details:
    fields = header_fields(raw)[:MAX_FIELDS]
    headers = tuple((clean(n), _shorten(clean(v), MAX_VALUE)) for n, v in fields)
    sender = ""
    for ident in mail_identities(raw):
        if ident.source == "From":
            addr = f"<{ident.address}>" if ident.address else ""
            sender = clean(" ".join(p for p in (ident.display_name or "", addr) if p))
            break
    content = mail_content(raw, bodies=bodies, thumbs=thumbs)
    words = _words(content.text) if want_words and bodies else ""
    return Details(
        headers=headers, sender=_shorten(sender, 200), first_words=words, content=content
    )


def stanza_details(raw: bytes, *, bodies: bool = True) -> Details:
    """The addressing attributes and ``<body>`` text of an XMPP stanza.

    A message fetched from the server archive (MAM) wraps the original in ``<forwarded>``: the
    innermost ``<message>`` tag is the one the offender sent.
    """
    tags = _MESSAGE_TAG.findall(raw)
    head = tags[-1] if tags else raw[: raw.find(b">") + 1] if b">" in raw else raw[:2000]
    attrs: list[tuple[str, str]] = []
    for m in _STANZA_ATTR.finditer(head):
        value = (m.group(2) if m.group(2) is not None else m.group(3)) or b""
        attrs.append((m.group(1).decode(), html.unescape(value.decode("utf-8", "replace"))))
    body = _STANZA_BODY.search(raw)
    text = html.unescape(body.group(1).decode("utf-8", "replace")) if body else ""
    sender = _shorten(clean(next((v for k, v in attrs if k == "from"), "")), 200)
    delay = _DELAY.search(raw)
    stamp = delay.group(1).decode("ascii", "replace") if delay else ""
    content = Content(
        date_header=clean(stamp),
        sent=_iso_time(stamp),
        sender=sender,
        to=_shorten(clean(next((v for k, v in attrs if k == "to"), "")), 200),
        text=clean(text)[:MAX_TEXT].strip() if bodies else "",
    )
    return Details(
        headers=tuple((k, _shorten(clean(v), MAX_VALUE)) for k, v in attrs),
        sender=sender,
        first_words=_words(text) if bodies else "",
        content=content,
    )


def _iso_time(stamp: str) -> datetime | None:
    """An XEP-0203 delay stamp (ISO 8601) in UTC; None if unreadable."""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return sent_time(stamp) if stamp else None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def describe(
    raw: bytes, *, channel: str, subject: str, bodies: bool = True, thumbs: Thumbs | None = None
) -> Details:
    """The report's view of ``raw``; first words are read only when there is no subject.

    With ``bodies`` False (a summary copy) no message text is read at all; images get small
    thumbnails while ``thumbs`` allows.
    """
    if channel == "xmpp":
        return stanza_details(raw, bodies=bodies)
    return mail_details(raw, want_words=not subject.strip(), bodies=bodies, thumbs=thumbs)


def message_text(raw: bytes) -> str:
    """The readable text of a mail message (for the warning sent), control characters removed
    and line ends made plain line feeds (a CR would print as a box)."""
    text = _mail_text(raw).replace("\r\n", "\n").replace("\r", "\n")
    return clean(text).strip()


def stanza_text(raw: bytes) -> str:
    """The ``<body>`` text of an XMPP message (for the warning sent), control characters removed."""
    body = _STANZA_BODY.search(raw)
    return clean(html.unescape(body.group(1).decode("utf-8", "replace"))).strip() if body else ""


def subject_of(raw: bytes) -> str:
    for name, value in header_fields(raw):
        if name.lower() == "subject":
            return clean(decode_words(value))
    return ""
