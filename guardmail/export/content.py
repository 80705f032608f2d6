"""What a message says, for the report: sent time, people, subject, text, attachments.

Contracts:
- Never raises on hostile input and does bounded work on it (the offender wrote these bytes):
  a message over ``MAX_PARSE`` bytes or with more than ``MAX_NESTED`` MIME containers is not
  taken apart (the stdlib parser recurses once per level); at most ``MAX_PARTS`` parts are
  read, ``MAX_PART`` bytes of each text part, ``MAX_HTML`` of each HTML part, and at most
  ``MAX_TEXT`` characters of text are kept. Each limit hit is said in ``notes``.
- HTML is turned into text by a linear scan that only collects text: scripts, styles and the
  head are dropped, nothing is fetched or run, link targets are written out beside their text.
- An unknown or bogus charset decodes as UTF-8 with replacement characters.
- Images (PNG, JPEG, GIF) get a small thumbnail of our own making when a ``Thumbs`` budget is
  given (guardmail.export.thumbs: bounded, never raises); every other part is listed only.
- Display only: the item files in the bundle, not this reading, are the evidence.
"""

from __future__ import annotations

import codecs
import email
import hashlib
import html
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from guardmail.core.headers import header_fields
from guardmail.core.item import decode_words
from guardmail.export.thumbs import Thumbs

MAX_PARSE = 16 * 1024 * 1024
MAX_NESTED = 64
MAX_PARTS = 100
MAX_PART = 1024 * 1024
MAX_HTML = 256 * 1024
MAX_TEXT = 12_000
MAX_ATTACHMENTS = 50
MAX_NAME = 200

_NESTED = re.compile(rb"boundary\s*=|message/", re.IGNORECASE)
# A Content-Type or Content-Disposition field with its folded continuation lines. The stdlib
# reads their parameters in time quadratic in the field's length (email.message._parseparam),
# for the boundary while parsing and for charset and filename after, so long ones are refused.
_PARAM_FIELD = re.compile(
    rb"^content-(?:type|disposition)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)
MAX_PARAM_FIELD = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANKS = re.compile(r"\n{3,}")
_BLOCK = frozenset(
    "p div br tr li h1 h2 h3 h4 h5 h6 table blockquote pre hr section article ul ol".split()
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    name: str
    content_type: str
    size: int  # decoded bytes
    sha256: str  # of the decoded bytes
    thumbnail: bytes = b""  # a small PNG we made of it (images only, when safe), else b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    date_header: str = ""  # the Date: field as written
    sent: datetime | None = None  # the Date: field in UTC, if it could be read
    sender: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    notes: tuple[str, ...] = field(default=())  # limits hit, parts that could not be read


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def sent_time(value: str) -> datetime | None:
    """The ``Date:`` value in UTC (a time without zone is taken as UTC); None if unreadable."""
    try:
        when = parsedate_to_datetime(value[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


_TAG_NAME = re.compile(r"(/?)([a-zA-Z][a-zA-Z0-9:-]*)")
_ATTR = {
    name: re.compile(rf"""\b{name}\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
    for name in ("href", "alt")
}
MAX_TAG = 2000  # characters of a tag read for its name and attributes


def _attr(tag: str, name: str) -> str:
    m = _ATTR[name].search(tag[:MAX_TAG])
    return next((g for g in m.groups() if g is not None), "")[:MAX_NAME] if m else ""


def html_text(markup: str) -> str:
    """The readable text of ``markup`` (its first ``MAX_HTML`` characters).

    A single forward scan, linear in the input: the stdlib's html.parser takes quadratic time
    on some hostile input (32 KB of ``<a `` took 20 s), and an export must not stall on it.
    """
    s = markup[:MAX_HTML]
    lower = s.lower()
    out: list[str] = []
    href = ""
    i, n = 0, len(s)
    while i < n:
        lt = s.find("<", i)
        if lt < 0:
            out.append(html.unescape(s[i:]))
            break
        out.append(html.unescape(s[i:lt]))
        if s.startswith("<!--", lt):
            end = s.find("-->", lt + 4)
            i = n if end < 0 else end + 3
            continue
        gt = s.find(">", lt + 1)
        if gt < 0:
            break  # an unfinished tag to the end: nothing readable follows
        tag = s[lt + 1 : gt]
        i = gt + 1
        m = _TAG_NAME.match(tag)
        if m is None:
            continue  # <!DOCTYPE>, <?xml?>, a stray "<"
        closing, name = m.group(1) == "/", m.group(2).lower()
        if name in _SKIP and not closing:
            end = lower.find(f"</{name}", i)
            i = n if end < 0 else end
        elif name in _BLOCK:
            out.append("\n")
        elif name == "a" and not closing:
            href = _attr(tag, "href")
        elif name == "a" and href:
            out.append(f" <{href}>")
            href = ""
        elif name == "img":
            alt = _attr(tag, "alt")
            out.append(f"[image{': ' + alt if alt else ''}]")
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _decode(data: bytes, charset: str | None) -> str:
    try:
        codecs.lookup(charset or "utf-8")
        return data.decode(charset or "utf-8", "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, AssertionError):
        data = None
    return data if isinstance(data, bytes) else b""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except (ValueError, TypeError, LookupError, AssertionError, IndexError):
        name = ""
    return clean(decode_words(str(name)[:MAX_NAME]))


def _headers(raw: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in header_fields(raw):
        key = name.lower()
        if key in ("from", "to", "cc", "subject", "date") and key not in found:
            found[key] = " ".join(clean(decode_words(value)).split())[:2000]
    return found


def mail_content(raw: bytes, *, bodies: bool = True, thumbs: Thumbs | None = None) -> Content:
    """What ``raw`` says; with ``bodies`` False, only who, when and the subject. Images get a
    thumbnail while ``thumbs`` allows."""
    h = _headers(raw)
    date = h.get("date", "")
    base = Content(
        date_header=date,
        sent=sent_time(date) if date else None,
        sender=h.get("from", ""),
        to=h.get("to", ""),
        cc=h.get("cc", ""),
        subject=h.get("subject", ""),
    )
    if not bodies:
        return base
    notes: list[str] = []
    if len(raw) > MAX_PARSE:
        notes.append(f"the message is {len(raw):,} bytes: too large to take apart here")
        return replace(base, notes=tuple(notes))
    if len(_NESTED.findall(raw)) > MAX_NESTED:
        notes.append(f"the message nests more than {MAX_NESTED} MIME parts: not taken apart here")
        return replace(base, notes=tuple(notes))
    longest = max((len(m.group(0)) for m in _PARAM_FIELD.finditer(raw)), default=0)
    if longest > MAX_PARAM_FIELD:
        notes.append(
            f"a Content-Type or Content-Disposition field is {longest:,} bytes long: "
            "the message is not taken apart here"
        )
        return replace(base, notes=tuple(notes))
    try:
        msg = email.message_from_bytes(raw)
        parts = list(_leaves(msg, notes))
    except (RecursionError, ValueError, TypeError, LookupError, AssertionError, IndexError):
        notes.append("the MIME structure could not be read")
        return replace(base, notes=tuple(notes))
    texts: list[str] = []
    attachments: list[Attachment] = []
    plain_seen = any(_is_text(p, "plain") for p in parts)
    for part in parts:
        ctype = part.get_content_type()
        name = _filename(part)
        if not name and _is_text(part, "plain"):
            texts.append(_decode(_payload(part)[:MAX_PART], part.get_content_charset()))
        elif not name and _is_text(part, "html"):
            if not plain_seen:  # an alternative to a plain part already shown says the same
                texts.append(
                    html_text(_decode(_payload(part)[:MAX_PART], part.get_content_charset()))
                )
        elif len(attachments) < MAX_ATTACHMENTS:
            data = _payload(part)
            taken = sum(1 for a in attachments if a.thumbnail)
            attachments.append(
                Attachment(
                    name=name or "(no name)",
                    content_type=clean(ctype)[:MAX_NAME],
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    thumbnail=thumbs.take(data, ctype, taken=taken) if thumbs else b"",
                )
            )
    if len(attachments) >= MAX_ATTACHMENTS:
        notes.append(f"only the first {MAX_ATTACHMENTS} attachments are listed")
    text = clean("\n\n".join(t.strip() for t in texts if t.strip()).replace("\r\n", "\n"))
    if len(text) > MAX_TEXT:
        notes.append(
            f"the text goes on for {len(text) - MAX_TEXT:,} more characters: see the item file"
        )
        text = text[:MAX_TEXT]
    return replace(base, text=text, attachments=tuple(attachments), notes=tuple(notes))


def _is_text(part: Message, subtype: str) -> bool:
    disposition = str(part.get("Content-Disposition", "")).strip().lower()
    return part.get_content_type() == f"text/{subtype}" and not disposition.startswith("attach")


def _leaves(msg: Message, notes: list[str]) -> list[Message]:
    leaves: list[Message] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if len(leaves) >= MAX_PARTS:
            notes.append(f"only the first {MAX_PARTS} MIME parts are read")
            break
        leaves.append(part)
    return leaves
