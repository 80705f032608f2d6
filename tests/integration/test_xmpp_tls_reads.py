"""Big stanzas over TLS with the daemon's small TLS read buffer (one 16 KiB buffer per thread
instead of asyncio's 256 KiB per connection, guardmail.channels.xmpp.client.small_tls_reads /
shrink_tls_buffer): each arrives over many reads and is still archived whole, over STARTTLS and
direct TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from guardmail.channels.xmpp.client import (
    TLS_READ_BUFFER,
    SharedReadSSLProtocol,
    shrink_tls_buffer,
)
from tests.conftest import wait_for
from tests.integration.test_xmpp_prosody import (
    USERS,
    VICTIM,
    Daemon,
    archived,
    blob,
    config_text,
    meta,
    peer,
    start,
)
from tests.servers.prosody import Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration

SIZES = [TLS_READ_BUFFER - 100, TLS_READ_BUFFER + 1, 300_000]


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody(USERS)
    yield server
    server.stop()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_stanzas_bigger_than_the_tls_read_buffer_are_archived_whole(
    prosody: Prosody, tmp_path: Path, tls: str
) -> None:
    port = prosody.tls_port if tls == "implicit" else prosody.port
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody, port=port, tls=tls))
    peers: list[Peer] = []
    daemons: list[Daemon] = []
    try:
        daemon = start(tmp_path, daemons)
        stalker = peer(prosody, peers, "stalker")
        for n, size in enumerate(SIZES):
            body = chr(ord("a") + n) * size
            stalker.send(f"<message to='{VICTIM}' type='chat' id='big{n}'><body>{body}</body>")
            stalker.send("</message>")
        wait_for(
            lambda: (
                daemon.count("item.quarantined") == len(SIZES) or daemon.proc.poll() is not None
            ),
            timeout=30,
            what="every big stanza quarantined",
        )
        assert daemon.proc.poll() is None, daemon.log_text()
        assert daemon.stop() == 0
    finally:
        for p in peers:
            p.close()
        for d in daemons:
            d.stop()
    entries = sorted(archived(tmp_path), key=lambda e: str(e["message_id"]))
    assert [e["message_id"] for e in entries] == [f"big{n}" for n in range(len(SIZES))]
    for n, (entry, size) in enumerate(zip(entries, SIZES, strict=True)):
        raw = blob(tmp_path, entry["seq"])
        assert raw.startswith(b"<message") and raw.endswith(b"</message>")
        assert f"<body>{chr(ord('a') + n) * size}</body>".encode() in raw
        assert len(meta(entry)["server_cert_sha256"]) == 64  # it did come over TLS


def test_shrink_tls_buffer_limits_reads_and_loses_nothing(tmp_path: Path) -> None:
    """asyncio's TLS protocol under a real loopback TLS connection: after the shrink its buffer
    and reads are TLS_READ_BUFFER bytes, and 1 MB sent in one write arrives intact."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    payload = bytes(range(256)) * 4096  # 1 MiB

    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.chunks: list[int] = []
            self.done = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data
            self.chunks.append(len(data))
            if len(self.data) >= len(payload) and not self.done.done():
                self.done.set_result(None)

    async def scenario() -> tuple[Collect, int, int]:
        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            Collect, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        assert shrink_tls_buffer(transport)
        inner = transport._ssl_protocol  # type: ignore[attr-defined]
        sizes = (inner.max_size, len(inner._ssl_buffer))
        await asyncio.wait_for(proto.done, 10)
        transport.close()
        server.close()
        await server.wait_closed()
        return proto, *sizes

    proto, max_size, buffer = asyncio.run(scenario())
    assert (max_size, buffer) == (TLS_READ_BUFFER, TLS_READ_BUFFER)
    assert bytes(proto.data) == payload
    # one delivery: what one buffer read let decrypt (plus a partial record left over), where
    # asyncio as shipped hands over 256 KiB reads
    assert max(proto.chunks) <= TLS_READ_BUFFER * 3


def test_connections_sharing_one_read_buffer_keep_their_bytes_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight TLS connections of one event loop, each sent 512 KiB of its own bytes at once by the
    server, read through the one shared buffer of SharedReadSSLProtocol (what the daemon's
    small_tls_reads installs): every connection gets exactly its own bytes, in order."""
    monkeypatch.setattr(asyncio.sslproto, "SSLProtocol", SharedReadSSLProtocol)
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    count = 8

    def payload(n: int) -> bytes:
        return bytes((n * 37 + i) % 251 for i in range(256)) * 2048  # 512 KiB

    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data
            if len(self.data) >= len(payload(0)) and not self.done.done():
                self.done.set_result(None)

    async def scenario() -> tuple[list[bytes], set[int]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = (await reader.readexactly(1))[0]
            writer.write(payload(n))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        pairs = [
            await loop.create_connection(
                Collect, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
            )
            for _ in range(count)
        ]
        for n, (transport, _) in enumerate(pairs):
            transport.write(bytes([n]))
        await asyncio.wait_for(asyncio.gather(*(proto.done for _, proto in pairs)), 20)
        buffers = {id(t._ssl_protocol._ssl_buffer_view) for t, _ in pairs}  # type: ignore[attr-defined]
        for transport, _ in pairs:
            transport.close()
        server.close()
        await server.wait_closed()
        return [bytes(proto.data) for _, proto in pairs], buffers

    received, buffers = asyncio.run(scenario())
    assert len(buffers) == 1  # one buffer for all of them
    for n, data in enumerate(received):
        assert data == payload(n), f"connection {n} got other bytes"
