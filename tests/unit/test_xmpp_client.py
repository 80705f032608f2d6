"""The slixmpp client's tee: slixmpp parses what the socket delivered, and every stanza reaches
the watcher with exactly the bytes it came in, however the reads were split."""

import asyncio
import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from slixmpp.util.sasl.mechanisms import SCRAM

from guardmail.channels.xmpp.client import StreamContext, WatchClient, shared_context, slixmpp_hi
from guardmail.channels.xmpp.tee import Slice

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' version='1.0' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.org'>"
)
STANZAS = [
    b"<message from='s@x.net/r'   type=\"chat\" to='victim@example.org/gm'><body>a &amp; "
    b"\xc3\xa9<![CDATA[<b>]]></body><x xmlns='urn:x'/></message>",
    b"<presence from='s@x.net' to='victim@example.org' type='subscribe'/>",
    b"<message xmlns:j='jabber:client' from='s@x.net' type='chat'><j:body>prefix</j:body>"
    b"</message>",
]


def run_client(chunks: list[bytes]) -> tuple[list[tuple[str, Slice, StreamContext]], WatchClient]:
    got: list[tuple[str, Slice, StreamContext]] = []

    def on_stanza(xml: ET.Element, piece: Slice, context: StreamContext) -> None:
        got.append((xml.tag, piece, context))

    async def go() -> WatchClient:
        client = WatchClient(
            jid="victim@example.org/gm",
            password="unused",
            tls="starttls",
            ssl_context=shared_context(None),
            on_stanza=on_stanza,
            connection=7,
        )
        client.init_parser()
        for chunk in chunks:
            client.data_received(chunk)
        client.cancel_connection_attempt()
        return client

    client = asyncio.run(go())
    return got, client


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_each_stanza_reaches_the_watcher_with_its_exact_bytes(size: int) -> None:
    stream = HEADER + b"\n ".join(STANZAS)
    got, client = run_client([stream[i : i + size] for i in range(0, len(stream), size)])
    assert [piece.raw for _, piece, _ in got] == STANZAS
    assert [t for t, _, _ in got] == [
        "{jabber:client}message",
        "{jabber:client}presence",
        "{jabber:client}message",
    ]
    context = got[0][2]
    assert context == StreamContext(header=HEADER, stream_id="s1", cert_sha256="", connection=7)
    assert client.tee_failure is None


def test_a_stream_restart_starts_a_fresh_slicer() -> None:
    got: list[tuple[bytes, bytes]] = []

    def on_stanza(xml: ET.Element, piece: Slice, context: StreamContext) -> None:
        got.append((piece.raw, context.header))

    async def go() -> None:
        c = WatchClient(
            jid="victim@example.org/gm",
            password="unused",
            tls="none",
            ssl_context=shared_context(None),
            on_stanza=on_stanza,
            connection=1,
        )
        c.init_parser()
        c.data_received(HEADER + STANZAS[1])
        c.init_parser()  # what slixmpp does after SASL success
        second = HEADER.replace(b"id='s1'", b"id='s2'")
        c.data_received(second + STANZAS[0])

    asyncio.run(go())
    assert got == [
        (STANZAS[1], HEADER),
        (STANZAS[0], HEADER.replace(b"id='s1'", b"id='s2'")),
    ]


def test_malformed_input_is_reported_not_archived() -> None:
    got, client = run_client([HEADER, b"<message><body></message>"])
    assert got == []
    assert client.tee_failure is not None and "not well-formed" in client.tee_failure


def test_nothing_after_malformed_bytes_is_read() -> None:
    # the well-formed stanzas after the bad one, in the same read and the next, are not handed
    # over: the client leaves the stream (the archive catch-up of the next login finds them)
    got, client = run_client(
        [HEADER + STANZAS[1] + b"<message><a></b></message>" + STANZAS[1], STANZAS[1]]
    )
    assert [piece.raw for _, piece, _ in got] == [STANZAS[1]]
    assert client.tee_failure is not None


def test_interleaved_streams_share_one_parser_and_keep_their_own_stanzas() -> None:
    """Two clients of one thread, each stanza split across the other's reads: the shared
    element parser never mixes them, and a bad stanza of one does not harm the other."""
    got: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": []}

    def client(name: str) -> WatchClient:
        def on_stanza(xml: ET.Element, piece: Slice, context: StreamContext) -> None:
            got[name].append((xml.tag, piece.raw))

        c = WatchClient(
            jid=f"{name}@example.org/gm",
            password="unused",
            tls="none",
            ssl_context=shared_context(None),
            on_stanza=on_stanza,
            connection=1,
        )
        c.init_parser()
        return c

    async def go() -> None:
        a, b = client("a"), client("b")
        a.data_received(HEADER + STANZAS[0][:30])
        b.data_received(HEADER.replace(b"xmlns='jabber:client'", b"xmlns='jabber:x'") + STANZAS[1])
        a.data_received(STANZAS[0][30:] + STANZAS[2][:5])
        b.data_received(b"<message><x>&nope;</x></message>")
        a.data_received(STANZAS[2][5:])
        for c in (a, b):
            c.cancel_connection_attempt()

    asyncio.run(go())
    assert got["a"] == [
        ("{jabber:client}message", STANZAS[0]),
        ("{jabber:client}message", STANZAS[2]),
    ]
    assert got["b"] == [("{jabber:x}presence", STANZAS[1])]


def test_no_automatic_answers_to_subscription_requests() -> None:
    _, client = run_client([HEADER])
    assert client.auto_authorize is None and client.auto_subscribe is False


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_fast_scram_key_derivation_equals_slixmpps(name: str) -> None:
    mech = SCRAM.__new__(SCRAM)
    mech.hash = getattr(hashlib, name[6:].replace("-", "").lower())
    for secret in ("secret", "p\u00e4ss"):
        assert mech.Hi(secret, b"salt\x00\xff", 4096) == slixmpp_hi(
            mech, secret, b"salt\x00\xff", 4096
        )


@pytest.mark.parametrize(
    ("sender", "answer"),
    [
        ("s@x.net/r", "service-unavailable"),  # anyone: as if the resource were not there
        ("friend@example.org/r", "service-unavailable"),
        ("example.org", "result"),  # the account's own server
        ("victim@example.org", "result"),  # the account itself (blocklist pushes)
    ],
)
def test_requests_get_nothing_but_a_missing_resources_answer(sender: str, answer: str) -> None:
    sent: list[str] = []

    async def go() -> None:
        client = WatchClient(
            jid="victim@example.org/gm",
            password="unused",
            tls="starttls",
            ssl_context=shared_context(None),
            on_stanza=lambda *_: None,
            connection=1,
        )
        client.send = lambda data, use_filters=True: sent.append(str(data))  # type: ignore[method-assign]
        client.init_parser()
        client.data_received(
            HEADER
            + f"<iq type='get' id='p1' from='{sender}' to='victim@example.org/gm'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        client.cancel_connection_attempt()

    asyncio.run(go())
    (reply,) = sent
    assert 'id="p1"' in reply
    if answer == "result":
        assert 'type="result"' in reply and "error" not in reply
    else:
        assert 'type="error"' in reply and answer in reply and "ping" not in reply


def test_small_tls_reads_apply_whoever_starts_the_first_xmpp_client() -> None:
    """Not only ``guardmail run`` with XMPP in the config at start: any XMPP source started
    later, or built by another caller, reads TLS into the shared small buffer (a fresh process:
    the replacement is process-wide)."""
    code = (
        "import asyncio, asyncio.sslproto\n"
        "from guardmail.channels.xmpp.client import SharedReadSSLProtocol, WatchClient, "
        "shared_context\n"
        "assert asyncio.sslproto.SSLProtocol is not SharedReadSSLProtocol\n"
        "async def go():\n"
        "    WatchClient(jid='v@example.org/gm', password='x', tls='starttls',\n"
        "                ssl_context=shared_context(None), on_stanza=print, connection=1)\n"
        "asyncio.run(go())\n"
        "print(asyncio.sslproto.SSLProtocol is SharedReadSSLProtocol)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"
