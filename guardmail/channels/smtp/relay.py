"""The outbound side of the content filter: re-injects messages into the next hop, byte for byte.

A small SMTP client of our own, because smtplib re-stuffs and re-terminates what it sends and
is synchronous, and aiosmtpd's Proxy loses recipients the next hop refuses.

Contracts:
- The DATA bytes go out exactly as given (still dot-stuffed as they were received), then
  ``.CRLF``: no re-folding, no changed line endings, no re-encoding.
- All or nothing: DATA is sent only once every recipient was accepted. Otherwise the
  transaction is reset and the refusals returned, so that a retry never duplicates a copy.
- ``send`` raises NextHopUnavailable when it cannot get an answer (refused, reset, timeout, a
  reply that is not SMTP); replies, good or bad, come back in a ``Relayed``.
- Connections are reused (idle ones for up to ``idle_seconds``). A reused connection the server
  has meanwhile closed is replaced once, and only before anything was accepted on it.
- XFORWARD attributes are passed on when the next hop offers XFORWARD (Postfix then logs the
  original client and queue ID), MAIL parameters SIZE, BODY=8BITMIME and SMTPUTF8 when it
  offers them; a message that needs SMTPUTF8 is refused 5.6.7 if it does not, as Postfix would.
  The RFC 3461 DSN parameters (RET, ENVID; NOTIFY, ORCPT per recipient) as the filter received
  them, when the next hop offers DSN (Postfix always does); a next hop without DSN gets none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from guardmail.errors import PeerError

SEND_CHUNK = 1 << 20
MAX_COMMAND = 512  # RFC 5321 4.5.3.1.4, CRLF included
_UTF8 = ("utf-8", "surrogateescape")


class NextHopUnavailable(PeerError):
    """The next hop could not be reached or gave no usable answer; the mail must stay queued."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    code: int
    lines: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to re-inject: the envelope sender, the DATA bytes and how they were sent."""

    sender: str  # "" for the null sender <>
    data: bytes  # dot-stuffed DATA section, ending in CRLF (or empty)
    eight_bit: bool = False  # BODY=8BITMIME was given
    smtputf8: bool = False
    xforward: Mapping[str, str] = field(default_factory=dict)
    dsn_mail: tuple[str, ...] = ()  # RET=, ENVID= (dsn.py), passed on when DSN is offered
    dsn_rcpt: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # NOTIFY=, ORCPT=


@dataclass(frozen=True, slots=True, kw_only=True)
class Relayed:
    """What the next hop said: ``reply`` to DATA when delivered, else the first refusal."""

    reply: Reply
    refused: Mapping[str, Reply] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.reply.ok and not self.refused


class _Stale(Exception):
    """A connection failed before anything on it was accepted: safe to try another."""


class _Connection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.last_used = time.monotonic()

    async def reply(self) -> Reply:
        lines: list[str] = []
        async with asyncio.timeout(self.timeout):
            while True:
                line = await self.reader.readline()
                if not line.endswith(b"\n"):
                    raise ConnectionError("the next hop closed the connection")
                text = line.rstrip(b"\r\n").decode(*_UTF8)
                if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
                    raise ConnectionError(f"the next hop sent a line that is not SMTP: {text!r}")
                lines.append(text[4:])
                if text[3:4] != "-":
                    return Reply(code=int(text[:3]), lines=tuple(lines))

    async def commands(self, lines: Sequence[str], *, pipelined: bool) -> list[Reply]:
        """Send ``lines`` (all at once when ``pipelined``) and read one reply to each."""
        if pipelined:
            self.writer.write(b"".join(f"{c}\r\n".encode(*_UTF8) for c in lines))
            await self.writer.drain()
            return [await self.reply() for _ in lines]
        replies = []
        for command in lines:
            self.writer.write(f"{command}\r\n".encode(*_UTF8))
            await self.writer.drain()
            replies.append(await self.reply())
        return replies

    async def data(self, data: bytes) -> None:
        end = b".\r\n" if not data or data.endswith(b"\r\n") else b"\r\n.\r\n"
        if len(data) <= SEND_CHUNK:
            self.writer.write(data + end)  # one segment for the usual small message
            await self.writer.drain()
            return
        view = memoryview(data)
        for start in range(0, len(view), SEND_CHUNK):
            self.writer.write(view[start : start + SEND_CHUNK])
            await self.writer.drain()
        self.writer.write(end)
        await self.writer.drain()

    def close(self, *, quit: bool = False) -> None:
        if quit and not self.writer.is_closing():
            self.writer.write(b"QUIT\r\n")
        self.writer.close()


class NextHop:
    """The server clean mail is re-injected into; see the module contracts."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        helo: str,
        timeout: float = 300.0,
        idle_seconds: float = 20.0,
        max_idle: int = 16,
    ) -> None:
        self.host = host
        self.port = port
        self.helo = helo
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, message: Outgoing, recipients: Sequence[str]) -> Relayed:
        """One transaction for ``recipients``; see the module contracts."""
        for _ in range(2):
            conn, reused = await self._acquire()
            try:
                result = await self._transaction(conn, message, recipients)
            except _Stale as exc:
                conn.close()
                if reused:
                    continue  # closed while idle: nothing was accepted, take a fresh one
                raise NextHopUnavailable(f"next hop {self}: {exc.__cause__ or exc}") from None
            except (OSError, EOFError, TimeoutError, UnicodeError) as exc:
                conn.close()
                raise NextHopUnavailable(f"next hop {self}: {_why(exc)}") from None
            except asyncio.CancelledError:  # the client left (or shutdown): no half transaction
                conn.close()
                raise
            self._release(conn, healthy=result.reply.code != 421)
            return result
        raise NextHopUnavailable(f"next hop {self}: connections keep closing")  # pragma: no cover

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close(quit=True)

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.last_used < self.idle_seconds and not conn.reader.at_eof():
                return conn, True
            conn.close(quit=True)
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise NextHopUnavailable(f"cannot connect to next hop {self}: {_why(exc)}") from None
        conn = _Connection(reader, writer, self.timeout)
        try:
            greeting = await conn.reply()
            if greeting.code != 220:
                raise ConnectionError(f"greeting {greeting}")
            (ehlo,) = await conn.commands([f"EHLO {self.helo}"], pipelined=False)
            if not ehlo.ok:
                raise ConnectionError(f"EHLO answered {ehlo}")
        except (OSError, EOFError, TimeoutError, UnicodeError) as exc:
            conn.close()
            raise NextHopUnavailable(f"next hop {self}: {_why(exc)}") from None
        for line in ehlo.lines[1:]:
            keyword, _, value = line.partition(" ")
            conn.extensions[keyword.upper()] = value
        return conn, False

    def _release(self, conn: _Connection, *, healthy: bool) -> None:
        conn.last_used = time.monotonic()
        if healthy and len(self._idle) < self.max_idle and not conn.writer.is_closing():
            self._idle.append(conn)
        else:
            conn.close(quit=healthy)

    async def _transaction(
        self, conn: _Connection, message: Outgoing, recipients: Sequence[str]
    ) -> Relayed:
        ext = conn.extensions
        params = [f"SIZE={len(message.data)}"] if "SIZE" in ext else []
        if message.eight_bit and "8BITMIME" in ext:
            params.append("BODY=8BITMIME")
        if message.smtputf8:
            if "SMTPUTF8" not in ext:
                no = Reply(code=554, lines=("5.6.7 the next hop does not offer SMTPUTF8",))
                return Relayed(reply=no, refused=dict.fromkeys(recipients, no))
            params.append("SMTPUTF8")
        dsn = "DSN" in ext
        if dsn:
            params += message.dsn_mail
        forwarded = _xforward(message.xforward, ext.get("XFORWARD"))
        mail = " ".join([f"MAIL FROM:<{message.sender}>", *params])
        rcpts = [
            " ".join([f"RCPT TO:<{r}>", *(message.dsn_rcpt.get(r, ()) if dsn else ())])
            for r in recipients
        ]
        lines = [*forwarded, mail, *rcpts]
        pipelined = "PIPELINING" in ext
        try:
            # DATA may end a pipelined group (RFC 2920); sent alone it waits for the RCPTs.
            replies = await conn.commands(
                [*lines, "DATA"] if pipelined else lines, pipelined=pipelined
            )
        except (OSError, EOFError, TimeoutError) as exc:
            raise _Stale(str(exc)) from exc
        mail_reply = replies[len(forwarded)]
        rcpt_replies = replies[len(forwarded) + 1 : len(lines)]
        refused = {r: rep for r, rep in zip(recipients, rcpt_replies, strict=True) if not rep.ok}
        if not mail_reply.ok:
            refused = dict.fromkeys(recipients, mail_reply)
        go = replies[-1] if pipelined else None
        if refused:
            if go is not None and go.code == 354:
                # Some recipients took it: only dropping the connection now keeps it from them.
                conn.writer.transport.abort()
            else:
                await conn.commands(["RSET"], pipelined=False)
            return Relayed(reply=next(iter(refused.values())), refused=refused)
        if go is None:
            (go,) = await conn.commands(["DATA"], pipelined=False)
        if go.code != 354:
            await conn.commands(["RSET"], pipelined=False)
            return Relayed(reply=go, refused=dict.fromkeys(recipients, go))
        await conn.data(message.data)
        final = await conn.reply()
        return Relayed(reply=final, refused={} if final.ok else dict.fromkeys(recipients, final))


def _xforward(attributes: Mapping[str, str], offered: str | None) -> list[str]:
    """XFORWARD commands for the attributes the next hop offers, each within 512 octets."""
    if offered is None:
        return []
    allowed = set(offered.upper().split())
    words = [f"{k}={v}" for k, v in attributes.items() if k in allowed]
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) + 2 <= MAX_COMMAND:
            lines[-1] += f" {word}"
        elif len("XFORWARD ") + len(word) + 2 <= MAX_COMMAND:
            lines.append(f"XFORWARD {word}")
    return lines


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
