"""The contacts a message's text gives: phone numbers, handles, addresses (issue 24's body signal).

``body_text`` finds the first ``text/plain`` part of a mail message (the body itself if it is
not multipart; nested multiparts are followed ``MAX_DEPTH`` deep) and decodes it (quoted-printable,
base64, its charset, undecodable bytes replaced). ``contacts`` reads from that text:

- ``tel:`` + the last ``TEL_DIGITS`` digits of a phone number (9 to 15 digits; so ``+49 151
  2345 6789`` and ``0151/23456789`` are one number; not a date, a time or an IP address: those
  have 8 or fewer digits, or four dotted groups);
- ``at:`` + a handle written ``@name`` (3 to 30 letters, digits, ``_`` or ``.``), not part of an
  address;
- ``mail:`` + an address (``address_key``).

Quoted lines (``>``) are skipped: a reply quotes the mail it answers, signature and all.
``signature_contacts`` reads only the signature's phone numbers and handles (its addresses are
as often the person answered or a list's as the writer's): the lines after the last ``-- ``
delimiter, or, without one, the last ``SIGNATURE_LINES`` non-empty lines. An offender's mail
is learned by its signature only (core/aliases.py): the rest of their text may name the
person they write to, whose phone number must not become a sign of the offender.

Contracts: pure, total (any bytes; never raises) and bounded: at most ``MAX_BODY`` bytes of the
body are looked at, ``MAX_PARTS`` parts, ``MAX_TEXT`` characters of decoded text, and at most
``MAX_CONTACTS`` contacts are kept, each of bounded length.
"""

from __future__ import annotations

import re
from email import base64mime, quoprimime

from guardmail.core.identity import normalize_address

MAX_BODY = 64 * 1024
MAX_TEXT = 8 * 1024
MAX_PARTS = 16
MAX_DEPTH = 3
MAX_CONTACTS = 8
SIGNATURE_LINES = 6
TEL_DIGITS = 9

_KIND = re.compile(rb"\s*([\w.+-]+/[\w.+-]+)")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,70})"|([^;\s]{1,70}))')
_CHARSET = re.compile(rb'(?i)charset[ \t]*=[ \t]*"?([\w.:-]{1,40})')
# No look-around: the engine tries these at every position, and a look-behind there costs
# more than the rest; the edges are checked in Python on the few matches.
_PHONE = re.compile(r"\d[\d \t()./-]{7,40}")  # trimmed and checked in _phones
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_LOCAL_CHARS = frozenset("._+-")
_DOMAIN_START = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_HANDLE_START = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{2,29}")
_DOMAIN_LIKE = re.compile(r"\.[A-Za-z]{2,}\.?$")  # "@yahoo.fr": an address cut at a space
MAX_ATS = 32
_HEAD_LIMIT = 16 * 1024  # where a part's empty line is looked for


def _split(part: bytes) -> tuple[bytes, bytes]:
    """Header section and body of ``part``, at its first empty line (LF or CRLF)."""
    # CRLF first: most mail has it, and then the LF search stops where it was found (a search
    # for the absent "\n\n" went through 16 KB of every CRLF message, ~20 us on 5-9 KB ham).
    crlf = part.find(b"\n\r\n", 0, _HEAD_LIMIT)
    lf = part.find(b"\n\n", 0, crlf + 1 if crlf >= 0 else _HEAD_LIMIT)
    if lf >= 0:
        return part[:lf], part[lf + 2 :]
    if crlf >= 0:
        return part[:crlf], part[crlf + 3 :]
    return part, b""


def _field(head: bytes, low: bytes, name: bytes) -> bytes:
    """The (unfolded enough) value of header field ``name`` in ``head`` ("" if absent):
    ``low`` is ``head`` lower-cased. Found with ``find``: a regex with ``^`` would be tried
    at every position of a header section of many Received fields."""
    i = low.find(b"\n" + name + b":")
    if i < 0:
        return b""
    start = end = i + len(name) + 2
    limit = min(len(head), start + 2048)
    while True:
        end = head.find(b"\n", end, limit)
        if end < 0 or end + 1 >= limit or head[end + 1 : end + 2] not in (b" ", b"\t"):
            return head[start : end if end >= 0 else limit]
        end += 1


def _decode(head: bytes, low: bytes, content_type: bytes, body: bytes) -> str:
    encoding = _field(head, low, b"content-transfer-encoding").strip().lower()
    charset_m = _CHARSET.search(content_type)
    charset = charset_m.group(1).decode("ascii") if charset_m else "utf-8"
    try:
        if encoding == b"base64":
            data = base64mime.decode(body[: MAX_TEXT * 2].decode("ascii", "ignore"))
        elif encoding == b"quoted-printable":
            text = body[: MAX_TEXT * 3].decode("latin-1")
            data = quoprimime.decode(text).encode("latin-1", "replace")
        else:
            data = body
        return data[: MAX_TEXT * 4].decode(charset, "replace")[:MAX_TEXT]
    except (LookupError, ValueError, TypeError):
        return body[:MAX_TEXT].decode("utf-8", "replace")


def _text(head: bytes, body: bytes, depth: int, budget: list[int]) -> str | None:
    low = head.lower()
    content_type = _field(head, low, b"content-type")
    ct = _KIND.match(content_type)
    kind = ct.group(1).lower() if ct else b"text/plain"
    if kind == b"text/plain":
        return _decode(head, low, content_type, body)
    if not kind.startswith(b"multipart/") or depth >= MAX_DEPTH:
        return None
    b = _BOUNDARY.search(content_type)
    if b is None:
        return None
    delimiter = b"--" + (b.group(1) or b.group(2))
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--") or budget[0] <= 0:
            break
        budget[0] -= 1
        sub_head, sub_body = _split(part.lstrip(b" \t").removeprefix(b"\r\n").removeprefix(b"\n"))
        found = _text(b"\n" + sub_head, sub_body, depth + 1, budget)
        if found is not None:
            return found
    return None


def body_text(raw: bytes) -> str:
    """The decoded text of the first text/plain part ("" if none). Never raises."""
    window = raw[: 64 * 1024 + MAX_BODY]
    head, body = _split(window)
    return _text(b"\n" + head, body[:MAX_BODY], 0, [MAX_PARTS]) or ""


def _unquoted(text: str) -> list[str]:
    if ">" not in text:  # most texts quote nothing: no test per line (the same lines)
        return text.splitlines()
    return [line for line in text.splitlines() if not line.lstrip().startswith(">")]


def _phone(match: str) -> str:
    if _IPV4.fullmatch(match.strip()):
        return ""
    digits = "".join(ch for ch in match if ch.isdigit())
    if not 9 <= len(digits) <= 15:
        return ""
    return "tel:" + digits[-TEL_DIGITS:]


def _at_signs(text: str, out: dict[str, None]) -> None:
    """Addresses and handles, found from their ``@`` (at most ``MAX_ATS`` of them)."""
    at = text.find("@")
    seen = 0
    while at >= 0 and seen < MAX_ATS:
        seen += 1
        start = at
        while start > max(0, at - 64) and (
            text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS or text[start - 1] == "_"
        ):
            start -= 1
        if start < at:
            domain = _DOMAIN_START.match(text, at + 1, at + 1 + 256)
            if domain is not None and not _word(text, domain.end()):
                norm = normalize_address(text[start:at] + "@" + domain.group(0))
                if norm is not None:
                    out.setdefault("mail:" + norm.address, None)
        elif at == 0 or text[at - 1] not in ".@":
            handle = _HANDLE_START.match(text, at + 1, at + 1 + 31)
            if (
                handle is not None
                and not _word(text, handle.end(), "@")
                and not _DOMAIN_LIKE.search(handle.group(0))
            ):
                out.setdefault("at:" + handle.group(0).rstrip(".").lower(), None)
        at = text.find("@", at + 1)


def _word(text: str, i: int, more: str = "") -> bool:
    return i < len(text) and (text[i].isalnum() or text[i] == "_" or text[i] in more)


def _phones(text: str, out: dict[str, None]) -> None:
    for m in _PHONE.finditer(text):
        run = m.group(0).rstrip(" \t()./-")
        start, end = m.start(), m.start() + len(run)
        if start > 0 and text[start - 1] in "+(":
            start -= 1
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_+.@/-"):
            continue  # inside a word, a version number, a path or an address
        if _word(text, end, "@") or (
            end + 1 < len(text) and text[end] in "./-" and text[end + 1].isdigit()
        ):
            continue
        tel = _phone(text[start:end])
        if tel:
            out.setdefault(tel, None)


def contacts(text: str) -> tuple[str, ...]:
    """The addresses, phone numbers and handles of ``text``'s unquoted lines, at most
    ``MAX_CONTACTS``."""
    out: dict[str, None] = {}
    lines = "\n".join(_unquoted(text[:MAX_TEXT]))
    if "@" in lines:
        _at_signs(lines, out)
    _phones(lines, out)
    return tuple(out)[:MAX_CONTACTS]


def signature(text: str) -> str:
    """The signature block of ``text``: after the last ``-- `` line, else the last lines."""
    lines = _unquoted(text[:MAX_TEXT])
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].rstrip() == "--":
            return "\n".join(lines[i + 1 : i + 1 + 2 * SIGNATURE_LINES])
    kept = [line for line in lines if line.strip()]
    return "\n".join(kept[-SIGNATURE_LINES:])


def signature_contacts(text: str) -> tuple[str, ...]:
    """The phone numbers and handles of the signature (``contacts`` less the addresses: the
    last lines of a message name the person it answers ("On Monday, you@... wrote:") and the
    lists it went to as often as the writer; bench/README.md)."""
    return tuple(c for c in contacts(signature(text)) if not c.startswith("mail:"))
