"""The milter protocol (version 6), filter side, sans-IO: bytes in, commands out; replies to bytes.

Our own small codec rather than ``kilter.protocol`` or ``pymilter`` (measured; see
plugins/postfix/README.md "Milter mode"): pymilter is libmilter's own threaded main loop, which
cannot be served inside the daemon's event loop; kilter.protocol decodes a 3 KB message in
~190 us of CPU against ~36 us here with the message rebuilt (bench/milter_codec.py), and decodes
macro values as ASCII and host names as IDNA, raising on the 8-bit input any sender can provoke.
This module has only what a recipient filter uses.

Packets are ``uint32 length`` (big-endian, counting the command byte) + command byte + data.

Contracts:
- ``Decoder.feed`` returns every complete packet, in order, and keeps partial ones; a packet
  announcing more than ``MAX_PACKET`` octets, or none, raises ``ProtocolViolation`` (the caller
  drops the connection: Postfix then applies ``milter_default_action``).
- Nothing is decoded as text: addresses, header names and values, macros stay bytes.
- ``Message.raw()`` is the message as the MTA holds it: each header ``name:value`` with its
  value's line breaks made CRLF, CRLF after each, a blank line, then the body chunks joined
  (the MTA sends the body with CRLF line ends). With Postfix this equals, byte for byte, what
  the after-queue filter archives without the Received header Postfix adds (a milter is not
  shown it); tests/integration/test_milter_bytes.py holds that over CPython's email corpus and
  ours. What cannot be carried: whether a message with no body ended its header block with a
  blank line (the blank line is always rebuilt: the common form). Neither mode has what Postfix
  changed on receipt (bare LF and bare CR line ends, headers past header_size_limit).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from guardmail.errors import PeerError

VERSION = 6
MAX_PACKET = 4 << 20  # Postfix's largest are headers (header_size_limit, 100 KiB by default)
_LENGTH = struct.Struct("!L")
_NEGOTIATE = struct.Struct("!LLL")

# MTA -> filter commands (SMFIC_*).
ABORT, BODY, CONNECT, MACRO, BODYEOB, HELO, QUIT_NC, HEADER = b"ABCDEHKL"
MAIL, EOH, OPTNEG, QUIT, RCPT, DATA, UNKNOWN = b"MNOQRTU"
# Filter -> MTA replies and actions (SMFIR_*).
R_ADDRCPT, R_DELRCPT, R_ACCEPT, R_CONTINUE, R_DISCARD = b"+-acd"
R_ADDRCPT_PAR = ord("2")
R_REJECT, R_TEMPFAIL, R_REPLYCODE = b"rty"

# Actions we may take (SMFIF_*) and protocol steps we need or not (SMFIP_*).
F_ADDRCPT, F_DELRCPT, F_ADDRCPT_PAR = 0x04, 0x08, 0x80
P_NOCONNECT, P_NOHELO, P_NOUNKNOWN, P_NODATA = 0x01, 0x02, 0x100, 0x200
P_NR_HDR, P_NR_MAIL, P_NR_RCPT, P_NR_EOH, P_NR_BODY = 0x80, 0x4000, 0x8000, 0x40000, 0x80000
P_NR_HELO = 0x2000  # libmilter mfdef.h: SMFIP_NR_HELO
P_HDR_LEADSPC = 0x100000
WANTED_ACTIONS = F_ADDRCPT | F_DELRCPT
# No events we do not use; no replies to events we never refuse at (one round trip a message).
# HELO is used: its name is kept with the evidence (the MTA sends it without waiting, NR_HELO).
WANTED_PROTOCOL = (
    P_NOCONNECT | P_NOUNKNOWN | P_NODATA | P_HDR_LEADSPC
    | P_NR_HDR | P_NR_MAIL | P_NR_RCPT | P_NR_EOH | P_NR_BODY | P_NR_HELO
)  # fmt: skip
# Which command is skipped (NO) or not answered (NR) under which protocol flag.
_NO_REPLY = {
    HEADER: P_NR_HDR,
    MAIL: P_NR_MAIL,
    RCPT: P_NR_RCPT,
    EOH: P_NR_EOH,
    BODY: P_NR_BODY,
    HELO: P_NR_HELO,
}
_ANSWERED = frozenset({CONNECT, HELO, MAIL, RCPT, DATA, HEADER, EOH, BODY, UNKNOWN})


class ProtocolViolation(PeerError):
    """The MTA sent something that is not the milter protocol; the connection is dropped."""


@dataclass(frozen=True, slots=True)
class Packet:
    command: int
    data: bytes


@dataclass(slots=True)
class Decoder:
    """Splits the byte stream from the MTA into packets."""

    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Packet]:
        buf = self._buffer
        buf += data
        packets: list[Packet] = []
        at = 0
        while len(buf) - at >= 4:
            (size,) = _LENGTH.unpack_from(buf, at)
            if not 1 <= size <= MAX_PACKET:
                raise ProtocolViolation(f"milter packet of {size} octets (limit {MAX_PACKET})")
            if len(buf) - at - 4 < size:
                break
            packets.append(Packet(buf[at + 4], bytes(buf[at + 5 : at + 4 + size])))
            at += 4 + size
        del buf[:at]
        return packets


def packet(command: int, data: bytes = b"") -> bytes:
    return _LENGTH.pack(len(data) + 1) + bytes([command]) + data


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What was agreed with the MTA at negotiation."""

    version: int
    actions: int
    protocol: int

    def answered(self, command: int) -> bool:
        """Whether the MTA waits for a reply to ``command``."""
        return command in _ANSWERED and not self.protocol & _NO_REPLY.get(command, 0)


def negotiate(data: bytes) -> tuple[Options, bytes]:
    """The agreed options and our OPTNEG reply to the MTA's OPTNEG ``data``."""
    if len(data) < _NEGOTIATE.size:
        raise ProtocolViolation(f"OPTNEG of {len(data)} octets, expected {_NEGOTIATE.size}")
    version, actions, protocol = _NEGOTIATE.unpack_from(data)
    if version < 2 or not actions & F_DELRCPT or not actions & F_ADDRCPT:
        raise ProtocolViolation(
            f"the MTA offers milter version {version}, actions {actions:#x}; guardmail needs "
            "version 2 or later with adding and removing recipients"
        )
    if not protocol & P_HDR_LEADSPC:
        raise ProtocolViolation(
            "the MTA does not offer SMFIP_HDR_LEADSPC: header bytes could not be kept exactly "
            "(Postfix 2.6 or later, milter_protocol = 6)"
        )
    agreed = Options(
        version=min(version, VERSION),
        # Recipients added with ESMTP parameters (NOTIFY=NEVER on a quarantine copy) when offered.
        actions=WANTED_ACTIONS | (actions & F_ADDRCPT_PAR),
        protocol=protocol & WANTED_PROTOCOL,
    )
    reply = _NEGOTIATE.pack(agreed.version, agreed.actions, agreed.protocol)
    return agreed, packet(OPTNEG, reply)


def cstrings(data: bytes) -> list[bytes]:
    """The NUL-terminated strings of ``data`` (a missing final NUL is tolerated)."""
    parts = data.split(b"\0")
    return parts[:-1] if parts and parts[-1] == b"" else parts


def macros(data: bytes) -> dict[bytes, bytes]:
    """``{name: value}`` from a MACRO packet's data (after its command byte)."""
    strings = cstrings(data[1:])
    return dict(zip(strings[::2], strings[1::2], strict=False))


def unbracket(address: bytes) -> bytes:
    """``a@b`` from ``<a@b>``; the null sender ``<>`` is ``b""``."""
    address = address.strip()
    if address.startswith(b"<") and address.endswith(b">"):
        return address[1:-1]
    return address


@dataclass(slots=True, kw_only=True)
class Message:
    """One transaction as the MTA hands it over, up to the end of the message."""

    sender: bytes = b""  # as in MAIL FROM, with its angle brackets
    sender_args: list[bytes] = field(default_factory=list)
    recipients: list[bytes] = field(default_factory=list)  # as in RCPT TO, with brackets
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    macros: dict[bytes, bytes] = field(default_factory=dict)
    helo: bytes = b""  # the client's HELO/EHLO name, as the MTA passed it
    size: int = 0
    keep_body: bool = True  # False: the body is counted, not kept (no recipient is protected)
    body_dropped: bool = False

    def header(self, data: bytes) -> None:
        name, _, rest = data.partition(b"\0")
        value = rest[:-1] if rest.endswith(b"\0") else rest
        self.headers.append((name, value))
        self.size += len(name) + len(value) + 3

    def chunk(self, data: bytes) -> None:
        self.size += len(data)
        if self.keep_body:
            self.body.append(data)
        else:
            self.body_dropped = True

    def raw(self) -> bytes:
        """The message bytes; see the module contracts for what cannot be exact."""
        lines = [
            name + b":" + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
            for name, value in self.headers
        ]
        return b"".join([*lines, b"\r\n", *self.body])


def reply_code(text: str) -> bytes:
    """SMFIR_REPLYCODE with ``text`` (``"550 5.7.1 ..."``); a ``%`` would be a format."""
    return packet(R_REPLYCODE, text.replace("%", "%%").encode("ascii", "replace") + b"\0")


def recipient_action(command: int, address: bytes, args: bytes = b"") -> bytes:
    """SMFIR_ADDRCPT / SMFIR_DELRCPT for ``address`` (as given in RCPT TO); SMFIR_ADDRCPT_PAR
    with its ESMTP ``args`` (``NOTIFY=NEVER``)."""
    if command == R_ADDRCPT_PAR:
        return packet(command, address + b"\0" + args + b"\0")
    return packet(command, address + b"\0")
