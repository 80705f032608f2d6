"""The slixmpp client of the XMPP watcher: one login, stanzas handed over with their exact bytes.

Contracts:
- Every top-level stanza reaches ``on_stanza`` together with the exact bytes the socket delivered
  for it: ``data_received`` feeds a ``StanzaSlicer`` (``init_parser``, called at every stream
  restart, starts a fresh one), and each stanza's element is built from its slice by the
  thread's shared parser (``elements.build``) instead of a slixmpp parser per connection, then
  handed to slixmpp's handlers. Bytes that are not well-formed (or that the slicer and the
  parser read differently) make the client leave the stream at once, without a stream error
  and before any later stanza is read (``tee_failure`` says why); the archive catch-up of the
  next login finds what came after.
- The client never acknowledges anything by itself: no plugins (no receipts, chat markers,
  disco or ping answers), roster ``auto_authorize`` off (``None``: no automatic answer, neither
  accept nor deny) and ``auto_subscribe`` off. Requests from anyone but the account's own
  server get ``service-unavailable``, what a resource that is not there gets.
- TLS is verified against the JID's domain (RFC 6120), whatever host is connected to; with
  ``tls: starttls`` a server that does not offer STARTTLS is left before any credential is sent.
- The server certificate's SHA-256 fingerprint (DER) is kept for the evidence.
- asyncio's TLS read buffer (256 KiB per connection, most of an idle account's memory) is cut to
  ``TLS_READ_BUFFER`` once the handshake is done (``shrink_tls_buffer``). A ``WatchClient`` goes
  further before its connection (``small_tls_reads``, whichever way its source was started):
  every asyncio TLS connection of a thread reads
  into one shared ``TLS_READ_BUFFER`` (the event loop fills it and the TLS layer copies it out
  within one callback, so nothing lives in it between reads). A stanza bigger than it arrives
  over several reads, which the parser and the slicer handle.
- SCRAM's key derivation is hashlib's PBKDF2 (the same result as slixmpp's, much faster).
- slixmpp's own logger is silenced: its lines carry whole stanzas (message bodies). Failures are
  reported as guardmail events by the source.
"""

from __future__ import annotations

import asyncio.sslproto
import hashlib
import logging
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.stanza import StreamFeatures
from slixmpp.util.sasl.mechanisms import SCRAM
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp.xmlstream.stanzabase import StanzaBase

from guardmail.channels.tls import client_context
from guardmail.channels.xmpp import elements
from guardmail.channels.xmpp.elements import ElementError
from guardmail.channels.xmpp.tee import Slice, SliceError, StanzaSlicer

PRIORITY = -1
_NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
_NS_ROSTER = "jabber:iq:roster"
NS_CLIENT = "jabber:client"

_slixmpp_log = logging.getLogger("slixmpp")
_slixmpp_log.addHandler(logging.NullHandler())
_slixmpp_log.propagate = False

_contexts: dict[Path | None, ssl.SSLContext] = {}

TLS_READ_BUFFER = 16 * 1024  # about one TLS record; a bigger stanza takes more reads
# asyncio's own class, kept before small_tls_reads replaces the module's name.
_SSLProtocol = asyncio.sslproto.SSLProtocol


def _pbkdf2_hi(self: SCRAM, text: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's Hi() is PBKDF2 with one block (RFC 5802 2.2): hashlib's C loop computes the same
    bytes as slixmpp's Python loop in a quarter of the time, which counts when hundreds of
    accounts log in at once (unit-tested against the original)."""
    digest: Any = self.hash  # a hashlib constructor, set in SCRAM.setup
    secret = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return hashlib.pbkdf2_hmac(digest().name, secret, salt, iterations)


slixmpp_hi = SCRAM.Hi
SCRAM.Hi = _pbkdf2_hi  # type: ignore[method-assign]


def shrink_tls_buffer(transport: Any, size: int = TLS_READ_BUFFER) -> bool:
    """Give the asyncio TLS protocol under ``transport`` a read buffer of ``size`` bytes instead
    of its 256 KiB (``asyncio.sslproto.SSLProtocol.max_size``): ``get_buffer`` hands the socket
    at most ``max_size`` bytes, and reads of decrypted data take at most as much. False when the
    transport is not asyncio's TLS transport (plain TCP, another event loop)."""
    found = getattr(transport, "_ssl_protocol", None)
    if not isinstance(found, _SSLProtocol):
        return False
    protocol: Any = found  # the attributes below are private to asyncio.sslproto
    if protocol.max_size <= size:
        return True
    buffer = bytearray(size)
    protocol.max_size = size  # an instance attribute: other TLS connections keep the default
    protocol._ssl_buffer = buffer
    protocol._ssl_buffer_view = memoryview(buffer)
    return True


class _ReadBuffers(threading.local):
    """One TLS read buffer per thread (an event loop runs in one thread)."""

    view: memoryview | None = None


_read_buffers = _ReadBuffers()


def _thread_read_buffer() -> memoryview:
    view = _read_buffers.view
    if view is None:
        view = _read_buffers.view = memoryview(bytearray(TLS_READ_BUFFER))
    return view


class SharedReadSSLProtocol(_SSLProtocol):
    """asyncio's TLS protocol reading into its thread's shared buffer instead of its own.

    Safe because the buffer holds nothing between two reads: the selector loop calls
    ``get_buffer``, ``recv_into`` and ``buffer_updated`` in one callback (``_read_ready``), and
    ``buffer_updated`` copies the bytes into the connection's own ``MemoryBIO`` at once.
    Decrypted data is read with ``SSLObject.read(max_size)``, a fresh bytes object each time."""

    max_size = TLS_READ_BUFFER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # takes max_size bytes of its own, dropped here
        shared = _thread_read_buffer()
        self._ssl_buffer_view = shared
        self._ssl_buffer = shared.obj

    def get_buffer(self, n: int) -> memoryview:
        shared = _thread_read_buffer()
        self._ssl_buffer_view = shared  # what buffer_updated copies from
        return shared


def small_tls_reads() -> None:
    """Make every asyncio TLS connection this process opens from now on read into its thread's
    one ``TLS_READ_BUFFER`` (``SharedReadSSLProtocol``) instead of 256 KiB of its own (allocated
    in the constructor, before any hook of ours runs; freed after the handshake, those blocks
    stay in the heap: ~80 KB per account at 500 accounts, measured). asyncio's event loops build
    the protocol as ``sslproto.SSLProtocol(...)`` when a connection or STARTTLS begins, so the
    module's name is what is replaced. For the daemon, whose asyncio TLS connections are
    XMPP's only."""
    asyncio.sslproto.SSLProtocol = SharedReadSSLProtocol  # type: ignore[misc]


def shared_context(ca_file: Path | None) -> ssl.SSLContext:
    """One verified TLS context per CA file, shared by every client (about 0.8 MB saved each)."""
    ctx = _contexts.get(ca_file)
    if ctx is None:
        ctx = _contexts[ca_file] = client_context(ca_file)
    return ctx


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamContext:
    """What the evidence keeps about the stream a stanza came in: its header (which declares the
    stanza's default namespace and prefixes), its id and the server certificate."""

    header: bytes
    stream_id: str
    cert_sha256: str  # "" without TLS
    connection: int  # counts connections of this source since the daemon started


StanzaHandler = Callable[[ET.Element, Slice, StreamContext], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """A stanza as the watcher keeps it until judged: parsed, its bytes, its stream, its time."""

    xml: ET.Element
    piece: Slice
    context: StreamContext
    received_at: datetime


class WatchClient(ClientXMPP):
    """A ClientXMPP that tees its input into a byte-exact slicer; see the module contracts."""

    def __init__(
        self,
        *,
        jid: str,
        password: str,
        tls: str,
        ssl_context: ssl.SSLContext,
        on_stanza: StanzaHandler,
        connection: int,
    ) -> None:
        mechanisms: dict[str, Any] = {}
        if tls == "none":  # loopback only (checked by the config): no TLS to wait for
            mechanisms = {"unencrypted_plain": True, "unencrypted_scram": True}
        # Before any connection, however the source was started (at the daemon's start, by a
        # tenant or source added later, by a bench): 16 KiB, not 256 KiB, per connection.
        small_tls_reads()
        super().__init__(
            jid,
            password,
            plugin_config={"feature_mechanisms": mechanisms},
            ssl_context=ssl_context,
        )
        self.auto_authorize = None
        self.auto_subscribe = False
        self.enable_direct_tls = tls == "implicit"
        self.enable_starttls = tls == "starttls"
        self.enable_plaintext = tls == "none"
        self.tls_mode = tls
        self.register_handler(
            Callback("guardmail requests", MatchXPath(f"{{{NS_CLIENT}}}iq"), self._answer)
        )
        self.on_stanza = on_stanza
        self.connection = connection
        self.cert_sha256 = ""
        self.tee_failure: str | None = None
        self.tls_missing = False
        # How far the connection got, for a login that times out: "connect" (TCP, and the TLS
        # handshake with direct TLS), "tls" (STARTTLS asked for: <proceed/> and the handshake),
        # "stream" (then SASL and binding).
        self.stage = "connect"
        self._slicer: StanzaSlicer | None = None
        self._declared = b""  # the stream header's namespace declarations
        self._context: StreamContext | None = None

    # --- the tee ---------------------------------------------------------------------------

    def init_parser(self) -> None:
        # Called by slixmpp at every stream start and restart, in place of its own: no
        # per-connection expat parser (``parser`` stays None), a fresh slicer instead.
        self.xml_depth = 0
        self.xml_root = None
        self._slicer = StanzaSlicer()
        self._declared = b""
        self._context = None

    def data_received(self, data: bytes | str) -> None:
        """slixmpp's reading of the stream, done from the slicer's pieces: the stream header
        starts the stream, each stanza's element is built from its own bytes, the stream's end
        tag ends the connection. Bytes that are not well-formed leave the stream at once (no
        stream error is sent: the stream can no longer be read)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        slicer = self._slicer
        if slicer is None:
            return  # before the connection, or after a failure: nothing is read any more
        failure: SliceError | None = None
        try:
            pieces: Sequence[Slice] = slicer.feed(raw)
        except SliceError as exc:  # what came before the bad bytes is still read
            pieces, failure = exc.slices, exc
        try:
            if self.xml_root is None and slicer.header is not None:
                self._declared = elements.declarations(slicer.header)
                self.xml_root = elements.stream_root(slicer.header)
                self.xml_depth = 1
                self.start_stream_handler(self.xml_root)  # type: ignore[no-untyped-call]
            for piece in pieces:
                xml = elements.build(self._declared, piece.raw)
                if xml.tag != piece.tag:  # a namespace the slicer read differently
                    raise ElementError(f"stanza {xml.tag} was sliced as {piece.tag}")
                self.on_stanza(xml, piece, self._stream_context())
                self._spawn_event(xml)
                if self._slicer is not slicer:  # the stream restarted (SASL success)
                    return
            if failure is not None:
                raise failure
        except (SliceError, ElementError) as exc:
            # Never archive anything but received bytes, and nothing after bytes that cannot
            # be read: leave; the archive catch-up finds what came after on the next login.
            self._slicer = None
            self.tee_failure = str(exc)
            self.abort()
            return
        if slicer.ended:
            self.disconnect_reason = "End of stream"
            self.abort()

    def _stream_context(self) -> StreamContext:
        if self._context is None:
            header = self._slicer.header if self._slicer is not None else None
            self._context = StreamContext(
                header=header or b"",
                stream_id=str(self.stream_id or ""),
                cert_sha256=self.cert_sha256,
                connection=self.connection,
            )
        return self._context

    def _answer(self, iq: StanzaBase) -> None:
        """Requests to guardmail's resource. Its own server's pushes (blocklist, ...) are
        acknowledged; roster pushes are ClientXMPP's. Anyone else gets what a resource that is
        not there gets (RFC 6120 8.5.3.1: service-unavailable): guardmail offers nothing, and
        an offender probing the account learns nothing from it."""
        if iq["type"] not in ("get", "set") or iq.xml.find(f"{{{_NS_ROSTER}}}query") is not None:
            return
        sender = iq.xml.get("from")
        own = self.boundjid.bare.casefold(), self.boundjid.domain.casefold()
        reply = iq.reply()
        if sender is not None and sender.split("/", 1)[0].casefold() not in own:
            reply["error"]["type"] = "cancel"
            reply["error"]["condition"] = "service-unavailable"
            reply["type"] = "error"
        reply.send()

    # --- TLS -------------------------------------------------------------------------------

    def connection_made(self, transport: Any, send_event: bool = True) -> None:
        super().connection_made(transport, send_event)
        shrink_tls_buffer(transport)
        self.stage = "stream"
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            der = ssl_object.getpeercert(True)
            if der:
                self.cert_sha256 = hashlib.sha256(der).hexdigest()

    async def start_tls(self) -> bool:
        self.stage = "tls"
        try:
            return await super().start_tls()
        finally:
            self.stage = "stream"

    @property
    def encrypted(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    async def _handle_stream_features(self, features: StreamFeatures) -> bool | None:
        offered = features.xml.find(f"{{{_NS_TLS}}}starttls") is not None
        if self.tls_mode == "starttls" and not self.encrypted and not offered:
            # A downgrade (or a server without TLS): leave before any credential is sent.
            self.tls_missing = True
            self.abort()
            return None
        if self.tls_mode == "starttls" and not self.encrypted:
            self.stage = "tls"  # <starttls/> goes out: <proceed/> and the handshake to come
        return await super()._handle_stream_features(features)
