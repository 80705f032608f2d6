"""The inbound SMTP side of the content filter: aiosmtpd, with the two things a filter needs added.

aiosmtpd's own DATA reader goes line by line (about 60 msg/s at 1 MB, and a 500 for lines over
1,000 octets that Postfix then turns into a bounce). ``FilterSMTP.smtp_DATA`` reads in large
chunks instead, up to the end-of-data mark, and keeps the bytes exactly as they arrived.
``smtp_XFORWARD`` takes Postfix's XFORWARD (the original client and the queue ID);
``smtp_MAIL`` and ``smtp_RCPT`` keep RFC 3461 DSN parameters (``dsn``) for the next hop.

Contracts:
- ``FilterEnvelope.wire`` is the DATA section exactly as sent (still dot-stuffed, without the
  final ``.CRLF``): relaying it followed by ``.CRLF`` hands the next hop the very same bytes.
  ``original_content`` is the message itself (dot-stuffing removed): what is judged and archived.
- No line-length or size limit here: Postfix's message_size_limit already applied, and a 5xx
  from a content filter would be a bounce.
- Bytes after the end-of-data mark (a pipelined QUIT or MAIL) stay in the stream for the next
  command.
- An exception in a handler hook is answered ``451 4.3.0`` (Postfix keeps the mail queued),
  never aiosmtpd's default 500.
- Every 2xx, 4xx and 5xx reply carries an RFC 3463 enhanced status code (RFC 2034; the filter
  offers ENHANCEDSTATUSCODES): aiosmtpd's own replies and a next hop's passed on without one get
  the code Postfix would give (``enhanced``). Not the greeting (220), 3xx, nor the 250 lines of
  the EHLO/HELO reply, as RFC 2034 says.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope

from guardmail.channels.smtp import dsn
from guardmail.core.headers import header_fields

END_OF_DATA = b"\r\n.\r\n"
# StreamReader limit: how much is buffered per read while looking for the end of data. Also the
# longest command line read before aiosmtpd answers "500 Command line too long".
READ_CHUNK = 1 << 20
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
UNAVAILABLE = "[UNAVAILABLE]"
_XTEXT = re.compile(rb"\+([0-9A-F]{2})")
# Postfix's own Received header: "... by mx.example (Postfix) with ESMTP id 4ABCD12345 ..."
_RECEIVED = frozenset({b"received"})
_RECEIVED_ID = re.compile(r"\bwith\s+\S+\s+id\s+([0-9A-Za-z]+)\b")
# A MAIL or RCPT path as Postfix sends it: <dot-atom@dot-atom>, ASCII (``FilterSMTP._getaddr``).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*)>")

# RFC 3463 codes for replies that come without one, as Postfix's smtpd words them; any other
# reply code gets its class's generic X.0.0.
_DETAILS = {
    b"221": b"2.0.0",
    b"250": b"2.0.0",
    b"252": b"2.0.0",
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"452": b"4.3.1",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.7.0",
    b"555": b"5.5.4",
}
_HAS_DETAIL = re.compile(rb"[245]\.[0-9]{1,3}\.[0-9]{1,3}(?: |$)")


def enhanced(line: bytes) -> bytes:
    """``line`` (one reply line) with an enhanced status code after its reply code if it is a
    2xx, 4xx or 5xx reply without one (the greeting's 220 excepted); otherwise unchanged."""
    code, sep, text = line[:3], line[3:4], line[4:]
    if not (len(code) == 3 and code.isdigit() and code[:1] in b"245" and sep in (b" ", b"-", b"")):
        return line
    if code == b"220" or _HAS_DETAIL.match(text):
        return line
    detail = _DETAILS.get(code, code[:1] + b".0.0")
    return code + (sep or b" ") + detail + (b" " + text if text else b"")


class FilterEnvelope(Envelope):
    """aiosmtpd's Envelope plus what the filter keeps: XFORWARD attributes and the wire bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.xforward: dict[str, str] = {}
        self.wire = b""
        self.dsn_mail: tuple[str, ...] = ()  # RET=, ENVID= as given (dsn.py)
        self.dsn_rcpt: dict[str, tuple[str, ...]] = {}  # recipient -> NOTIFY=, ORCPT=


def unstuff(wire: bytes) -> bytes:
    """The message from its DATA bytes: the first dot of every line starting with one removed."""
    if wire.startswith(b"."):
        wire = wire[1:]
    return wire.replace(b"\r\n.", b"\r\n")


def _overlap(tail: bytes) -> int:
    """How many bytes at the end of ``tail`` begin the end-of-data mark."""
    for k in range(min(len(tail), len(END_OF_DATA)), 0, -1):
        if tail.endswith(END_OF_DATA[:k]):
            return k
    return 0


async def read_data(reader: asyncio.StreamReader) -> bytes:
    """The DATA section up to ``CRLF.CRLF`` (returned without the final ``.CRLF``).

    Reads in chunks of up to the reader's limit. Where a chunk ends inside a possible end mark
    (``\\r``, ``\\r\\n``, ``\\r\\n.``), single bytes are read until it is decided, so nothing
    past the mark is ever consumed. The data begins as if after a CRLF, so an empty message
    (``.CRLF`` at once) is recognised too.
    """
    parts: list[bytes] = []
    pending = 2  # the CRLF that ended the DATA command counts as the start of a mark
    while pending != len(END_OF_DATA):
        if pending:
            byte = await reader.readexactly(1)
            parts.append(byte)
            pending = _overlap(END_OF_DATA[:pending] + byte)
            continue
        try:
            parts.append(await reader.readuntil(END_OF_DATA))
            break
        except asyncio.LimitOverrunError as exc:
            chunk = await reader.read(exc.consumed)
            parts.append(chunk)
            pending = _overlap(chunk[-(len(END_OF_DATA) - 1) :])
    # Drop the final ".CRLF" before joining: a 50 MB message is copied once, not twice.
    cut = 3
    while cut:
        last = parts.pop()
        if len(last) > cut:
            parts.append(last[:-cut])
        cut = max(0, cut - len(last))
    return b"".join(parts)


def xtext_decode(value: str) -> str:
    """RFC 3461 xtext ("+2B" for "+") as Postfix writes XFORWARD values."""
    raw = value.encode("utf-8", "surrogateescape")
    return _XTEXT.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8", "replace")


def queue_id(xforward: dict[str, str], raw: bytes) -> str | None:
    """Postfix's queue ID: XFORWARD IDENT, else the ``id`` in the topmost Received header.

    Only the topmost header: it is the one our Postfix wrote; those below came from elsewhere.
    """
    ident = xforward.get("IDENT")
    if ident and ident != UNAVAILABLE:
        return xtext_decode(ident)
    # Only the Received fields are decoded: the others are most of a header section's cost.
    received = next((v for _, v in header_fields(raw, _RECEIVED)), None)
    found = _RECEIVED_ID.search(received) if received else None
    return found.group(1) if found else None


class FilterSMTP(SMTP):
    """aiosmtpd.smtp.SMTP with chunked DATA and XFORWARD; see the module contracts."""

    line_length_limit = READ_CHUNK
    _replies: list[bytes] | None = None
    _greeting_reply = False  # answering EHLO or HELO: its 250 lines carry no enhanced code

    def _create_envelope(self) -> FilterEnvelope:
        return FilterEnvelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own (the address, the rest), for a plain ``<local@domain>`` without the
        email package's header parser: aiosmtpd's way costs 130-200 us an address (a Protocol
        class made per call, then ``get_angle_addr``), twice a message, ~10% of the filter's CPU
        for small mail. Anything else (quoted local parts, literals, source routes, comments,
        8-bit) goes to aiosmtpd's; tests/unit/test_smtp_wire.py checks both give the same."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), arg[plain.end() :]
        if rest[:1] in (" ", "\t"):  # get_angle_addr takes the folding white space after ">"
            rest = rest.lstrip()
            if rest.startswith("("):  # and a comment: not plain
                return super()._getaddr(arg)
        elif rest.startswith("("):
            return super()._getaddr(arg)
        limit = self.local_part_limit
        if limit and len(address.rpartition("@")[0]) > limit:
            return None, None
        return address, rest

    async def push(self, status: AnyStr) -> None:
        """Send a reply; replies to pipelined commands go out as one unit (RFC 2920 3.2).

        While more commands are already buffered, the reply waits for theirs; every loopback
        write wakes the other side, so this saves Postfix and us a few context switches a
        message. A reply is never held back once the input is drained.
        """
        if isinstance(status, str):
            line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            line = bytes(status)
        if not (self._greeting_reply and line.startswith(b"250")):
            line = enhanced(line)
        replies = self._replies if self._replies is not None else []
        replies.append(line + b"\r\n")
        closing = line[:3] in (b"221", b"421")  # nothing follows these
        if not closing and getattr(self._reader, "_buffer", None):  # a pipelined command waits
            self._replies = replies
            return
        self._replies = None
        self._writer.write(b"".join(replies))
        await self._writer.drain()

    async def smtp_EHLO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._greeting_reply = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._greeting_reply = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        envelope = self.envelope
        assert isinstance(envelope, FilterEnvelope)
        try:
            rest, params = dsn.take(arg, dsn.MAIL_PARAMS) if arg else (arg, ())
        except dsn.BadParameter as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        had = envelope.mail_from
        await super().smtp_MAIL(rest)
        if envelope.mail_from and not had:
            envelope.dsn_mail = params

    async def smtp_RCPT(self, arg: str | None) -> None:
        envelope = self.envelope
        assert isinstance(envelope, FilterEnvelope)
        try:
            rest, params = dsn.take(arg, dsn.RCPT_PARAMS) if arg else (arg, ())
        except dsn.BadParameter as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        count = len(envelope.rcpt_tos)
        await super().smtp_RCPT(rest)
        if len(envelope.rcpt_tos) > count and params:
            envelope.dsn_rcpt[envelope.rcpt_tos[-1]] = params

    async def smtp_XFORWARD(self, arg: str | None) -> None:
        envelope = self.envelope
        if await self.check_helo_needed("EHLO"):
            return
        assert isinstance(envelope, FilterEnvelope)
        if envelope.mail_from:
            await self.push("503 5.5.1 Error: XFORWARD not allowed during a mail transaction")
            return
        pairs = [word.partition("=") for word in (arg or "").split()]
        if not pairs or any(
            not eq or name.upper() not in XFORWARD_ATTRIBUTES for name, eq, _ in pairs
        ):
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value...")
            return
        for name, _, value in pairs:
            envelope.xforward[name.upper()] = value
        await self.push("250 2.0.0 Ok")

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        assert isinstance(envelope, FilterEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        envelope.wire = await read_data(self._reader)
        # The client now waits for our answer: it is not idle, and the idle timer must not close
        # its connection while the handler works (with a next hop that hung after DATA, the
        # timer fired with the next hop's timeout and the client lost the connection instead of
        # getting 451). The handler bounds its own work; the timer restarts after the answer.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        content = unstuff(envelope.wire)
        envelope.content = envelope.original_content = content
        try:
            status: Any = await self._call_handler_hook("DATA")
        except Exception as error:  # a filter must never answer 5xx by accident
            status = await self.handle_exception(error)
        self._reset_timeout()
        self.envelope = self._create_envelope()  # aiosmtpd's post-DATA state
        await self.push(status if isinstance(status, str) else "250 2.0.0 OK")
