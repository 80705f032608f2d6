"""Fuzz targets: every parser a sender, a server or a local client reaches, each a function of
bytes that returns normally or raises ``AssertionError`` (a broken promise). Any other exception
is a crash: the parser let hostile input through its contract.

Used by ``tests/unit/test_fuzz.py`` (a short hypothesis run in the suite) and ``bench/fuzz.py``
(coverage-guided with atheris, a million inputs per target).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from guardmail.channels.imap.batch import WHOLE, Folder
from guardmail.channels.smtp.milter_codec import (
    BODY,
    HEADER,
    MACRO,
    Decoder,
    Message,
    ProtocolViolation,
    macros,
)
from guardmail.channels.smtp.wire import queue_id, unstuff, xtext_decode
from guardmail.channels.xmpp.stanza import read_stanza
from guardmail.channels.xmpp.tee import SliceError, StanzaSlicer
from guardmail.control.offenders import BadReport
from guardmail.control.protocol import Refused, parse_report
from guardmail.core.alias_features import extract, from_dict
from guardmail.core.aliases import AliasIndex
from guardmail.core.confusables import skeleton
from guardmail.core.identity import normalize_address, normalize_display_name, normalize_jid
from guardmail.core.item import decode_words, mail_item, read_mail
from guardmail.imports.files import read_mbox

NOW = datetime(2026, 12, 2, tzinfo=UTC)
_PLAIN = re.compile(r"[a-z0-9._-]+@[a-z0-9.-]+")
STREAM = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' version='1.0'>"
)


def mail(data: bytes) -> None:
    """A message from anyone: read totally, the item's bytes never changed."""
    reading = read_mail(data, envelope_sender="x@y.example")
    assert reading.identities[-1].source == "envelope"
    item = mail_item(data, tenant="t", account="a", source_ref="r", received_at=NOW)
    assert item.raw is data
    assert len(item.summary.subject) <= 500


def encoded_words(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    decode_words(text)
    decode_words("=?utf-8?b?" + text + "?=")
    decode_words("=?" + text)


def identities(data: bytes) -> None:
    """Normalisation of what a sender writes: total, deterministic, and idempotent for a plain
    result (``address`` is for display: a local part with specials is not re-quoted)."""
    text = data.decode("utf-8", "replace")
    for normalize in (normalize_address, normalize_jid):
        found = normalize(text)
        assert found == normalize(text)
        if found is not None and _PLAIN.fullmatch(found.address):
            again = normalize(found.address)
            assert again is not None and again.key == found.key, (text, found, again)
    normalize_display_name(text)
    skeleton(text)


def stanza_stream(data: bytes) -> None:
    """A server's stream, split anywhere: slices are the stream's own bytes, byte for byte."""
    stream = STREAM + data
    cut = len(STREAM) + (data[0] if data else 0) % (len(data) + 1)
    slicer = StanzaSlicer()
    slices = []
    try:
        for piece in (stream[:cut], stream[cut:]):
            slices += slicer.feed(piece)
    except SliceError:
        pass
    for s in slices:
        assert stream[s.offset : s.offset + len(s.raw)] == s.raw
        try:
            element = ET.fromstring(STREAM + s.raw + b"</stream:stream>")
        except ET.ParseError:
            continue
        for child in element:
            read_stanza(child, account_bare="victim@localhost", trust_stanza_id=True)


def smtp_wire(data: bytes) -> None:
    unstuffed = unstuff(data)
    assert len(unstuffed) <= len(data)
    text = data.decode("utf-8", "replace")
    xtext_decode(text)
    queue_id({"IDENT": text}, data)


def control_request(data: bytes) -> None:
    """A line from a local client on the control socket."""
    try:
        request = json.loads(data)
    except (ValueError, RecursionError):
        return  # the server answers bad_request (test_control covers it)
    if not isinstance(request, dict):
        return
    try:
        parse_report(request, uid=1000, via="fuzz")
    except (BadReport, Refused):
        pass  # answered with an error line


_LITERAL = re.compile(rb".*\{(\d{1,9})\}$")


def _imaplib_lines(wire: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """A server's untagged lines as imaplib hands them to imapclient: a line ending in
    ``{N}`` becomes (line, the N bytes after it) and the line's rest follows it."""
    out: list[bytes | tuple[bytes, bytes]] = []
    rest = wire
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        literal = _LITERAL.match(line)
        if literal is None:
            out.append(line)
            continue
        size = int(literal.group(1))
        out.append((line, rest[:size]))
        rest = rest[size:]
    return out


def imap_fetch(data: bytes) -> None:
    """A FETCH reply of a server holding a message anyone wrote, after lines the server sent
    before it: the item's bytes are the literal's bytes, exactly, or the reply is refused as a
    protocol error (the watcher reconnects); never another exception."""
    cut = data[0] % (len(data) + 1) if data else 0
    noise, body = data[:cut], data[cut:]
    wire = (
        b'* 3 FETCH (UID 7 FLAGS (\\Seen) INTERNALDATE "02-Dec-2026 10:00:00 +0000" '
        b"BODY[] {" + str(len(body)).encode() + b"}\r\n" + body + b")"
    )
    stream = noise + b"\r\n" + wire if noise else wire
    try:
        reply = parse_fetch_response(_imaplib_lines(stream), True, True)
    except ProtocolError:
        return
    if 7 not in reply or WHOLE not in reply[7]:
        return  # the noise swallowed the reply: the UID is confirmed gone or refetched
    where = Folder(tenant="t", account="a", folder="INBOX", uidvalidity=1)
    item = where.item(7, reply[7], NOW)
    # Bytes the server sent, unchanged: the message's own when nothing came before it.
    assert item.raw == body if not noise else item.raw in stream, (noise, body)


def mbox(data: bytes) -> None:
    """An mbox an offender wrote (guardmail import): split into messages that lose no byte and
    add none; each message's bytes and hash agree; no kept message is over the bound."""
    data = b"From x@y Mon Nov  3 10:00:00 2025\n" + data
    found = list(read_mbox(io.BytesIO(data), max_item=4096))
    offsets = [int(dict(f.meta)["mbox_offset"]) for f in found]
    assert offsets[0] == 0 and offsets == sorted(set(offsets))
    for n, f in enumerate(found):
        end = offsets[n + 1] if n + 1 < len(found) else len(data)
        assert f.position == end and data[offsets[n] : end].startswith(b"From ")
        body = data[end - f.size : end]
        assert hashlib.sha256(body).hexdigest() == f.sha256
        assert f.raw == body if f.size <= 4096 else f.raw is None


def alias_linker(data: bytes) -> None:
    """A message anyone wrote, read by the alias linker: its features never raise, come back
    unchanged from their stored (JSON) form, and, once learned as an offender's, score against
    an index holding them with a likelihood in [0, 1] and that offender first."""
    identities = read_mail(data, envelope_sender="x@y.example").identities
    learned = extract(data, identities, text=True)
    assert from_dict(json.loads(json.dumps(learned.as_dict()))) == learned
    index = AliasIndex.build(
        [("o", ("known@evil.example",), ("Mark Dalton",))], [("o", learned, NOW)]
    )
    decided = extract(data, identities, learn=False)
    found = index.score(decided, now=NOW, text=lambda: learned.text, decisive=0.5)
    assert all(0.0 <= s.likelihood <= 1.0 for s in found), found
    assert not found or found[0].offender == "o"


def milter_stream(data: bytes) -> None:
    """What Postfix hands the milter, split anywhere (a sender wrote the headers and the body
    inside it): packets, or a ProtocolViolation; a message assembled from the header and body
    packets holds every body byte, in order."""
    cut = data[0] % (len(data) + 1) if data else 0
    decoder = Decoder()
    packets = []
    try:
        for piece in (data[:cut], data[cut:]):
            packets += decoder.feed(piece)
    except ProtocolViolation:
        return
    message = Message()
    body = b""
    for packet in packets:
        if packet.command == HEADER:
            message.header(packet.data)
        elif packet.command == BODY:
            message.chunk(packet.data)
            body += packet.data
        elif packet.command == MACRO:
            macros(packet.data)
    assert message.raw().endswith(b"\r\n" + body)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "alias_linker": alias_linker,
    "milter_stream": milter_stream,
    "imap_fetch": imap_fetch,
    "mail": mail,
    "encoded_words": encoded_words,
    "identities": identities,
    "stanza_stream": stanza_stream,
    "smtp_wire": smtp_wire,
    "control_request": control_request,
    "mbox": mbox,
}
