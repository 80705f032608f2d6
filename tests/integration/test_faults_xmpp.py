"""A real Prosody misbehaving through a faulting proxy (tests/servers/faultproxy.py), watched by the
real daemon (issue 23, "Resources and faults"): the connection reset in the middle of an
offender's stanza, and a TLS handshake (direct TLS, STARTTLS) that stalls. The watcher reconnects
with backoff and catches up from the server archive (MAM): no partial stanza archived, each
offender stanza archived once, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
)
from tests.servers.faultproxy import Action, Fault, FaultProxy
from tests.servers.prosody import Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody(USERS)
    yield server
    server.stop()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    opened: list[Peer] = []
    yield opened
    for p in opened:
        p.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def write_config(tmp: Path, server: Prosody, *, port: int, tls: str) -> None:
    text = config_text(tmp, server, port=port, tls=tls).replace(
        "timeout_seconds: 5", "timeout_seconds: 2"
    )
    (tmp / "guardmail.yaml").write_text(text)


def chat(sender: Peer, ident: str, body: str) -> None:
    sender.send(f"<message to='{VICTIM}' type='chat' id='{ident}'><body>{body}</body></message>")


@pytest.mark.parametrize("action", ["reset", "stall"])
def test_a_stream_cut_mid_stanza_archives_no_fragment_and_the_archive_catches_up_once(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon], action: Action
) -> None:
    """``reset``: RST in the middle of the stanza. ``stall``: the server hangs there; the
    keepalive ping (every 2 s) gets no answer within timeout_seconds and the watcher leaves."""
    with FaultProxy(prosody.port) as proxy:
        write_config(tmp_path, prosody, port=proxy.port, tls="none")
        phone = peer(prosody, peers, "victim", resource="phone", priority=5)  # carbons flow
        daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
        daemons.append(daemon)
        wait_for(lambda: "xmpp.caught_up" in daemon.log_text(), what="caught up")
        stalker = peer(prosody, peers, "stalker")
        friend = peer(prosody, peers, "friend")
        chat(stalker, "s1", "whole")
        wait_for(lambda: daemon.count("item.quarantined") == 1, what="s1 archived live")
        proxy.arm(Fault(action=action, pattern=b"CUT-HERE", keep=4))  # inside <body>
        chat(stalker, "s2", "CUT-HERE and the rest")
        proxy.wait_struck()
        chat(stalker, "s3", "while you were away")
        chat(friend, "f1", "lunch?")
        wait_for(lambda: "xmpp.disconnected" in daemon.log_text(), what="the cut noticed")
        wait_for(lambda: daemon.count("item.quarantined") == 3, what="s2 and s3 caught up")
        wait_for(lambda: daemon.count("xmpp.caught_up") >= 2, what="caught up again")
        assert b"id='f1'" in b"".join(phone.drain(quiet=0.5))
        assert daemon.stop() == 0
    text = daemon.log_text()
    assert daemon.count("xmpp.connected") == 2 and "Traceback" not in text
    assert "xmpp.tee_failed" not in text
    entries = archived(tmp_path)
    assert sorted(str(e["message_id"]) for e in entries) == ["s1", "s2", "s3"]  # once each
    for entry in entries:
        raw = blob(tmp_path, entry["seq"])
        assert raw.startswith(b"<message") and raw.endswith(b"</message>")  # whole stanzas
    by_id = {str(e["message_id"]): e for e in entries}
    assert meta(by_id["s1"])["via"] == "carbon"
    assert meta(by_id["s2"])["via"] == "mam"  # the cut copy was never archived
    assert b"CUT-HERE and the rest" in blob(tmp_path, by_id["s2"]["seq"])


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_stalled_tls_handshake_times_out_clearly_and_recovers(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon], tls: str
) -> None:
    target = prosody.tls_port if tls == "implicit" else prosody.port
    # Direct TLS: the ClientHello is never forwarded. STARTTLS: the server's <proceed/> is not.
    if tls == "implicit":
        fault = Fault(action="stall", direction="up", after=0, times=2)
    else:
        fault = Fault(action="stall", pattern=b"<proceed", times=2)
    with FaultProxy(target) as proxy:
        write_config(tmp_path, prosody, port=proxy.port, tls=tls)
        proxy.arm(fault)
        daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
        daemons.append(daemon)
        wait_for(lambda: "xmpp.connected" in daemon.log_text(), what="connected at the third try")
        failed = [ln for ln in daemon.log_text().splitlines() if "xmpp.connect_failed" in ln]
        assert len(failed) == 2 and proxy.struck == 2
        for line in failed:
            assert f"127.0.0.1:{proxy.port}" in line and "TLS handshake" in line, line
            assert "no answer within 2s" in line, line
        stalker = peer(prosody, peers, "stalker")
        chat(stalker, "t1", "found you")
        wait_for(lambda: daemon.count("item.quarantined") == 1, what="watching after the stall")
        assert daemon.stop() == 0
    assert [e["message_id"] for e in archived(tmp_path)] == ["t1"]


def test_a_malformed_stanza_from_the_server_leaves_the_stream_and_the_archive_catches_up(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    """The server's stream turns malformed inside an offender's stanza (the proxy replaces its
    end with a mismatched end tag, then closes): the watcher leaves that stream at once
    (``xmpp.tee_failed``), archives nothing of the broken bytes, and the next login's archive
    catch-up archives the stanza as the server stored it, once, with the later ones."""
    with FaultProxy(prosody.port) as proxy:
        write_config(tmp_path, prosody, port=proxy.port, tls="none")
        peer(prosody, peers, "victim", resource="phone", priority=5)
        daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
        daemons.append(daemon)
        wait_for(lambda: "xmpp.caught_up" in daemon.log_text(), what="caught up")
        stalker = peer(prosody, peers, "stalker")
        chat(stalker, "s1", "whole")
        wait_for(lambda: daemon.count("item.quarantined") == 1, what="s1 archived live")
        proxy.arm(Fault(action="reply", pattern=b"POISON", keep=6, reply=b"</bodx></message><a/>"))
        chat(stalker, "s2", "POISON and the rest")
        proxy.wait_struck()
        chat(stalker, "s3", "while you were away")
        wait_for(lambda: "xmpp.tee_failed" in daemon.log_text(), what="the bad bytes noticed")
        wait_for(lambda: daemon.count("item.quarantined") == 3, what="s2 and s3 caught up")
        assert daemon.stop() == 0
    text = daemon.log_text()
    assert "Traceback" not in text
    entries = archived(tmp_path)
    assert sorted(str(e["message_id"]) for e in entries) == ["s1", "s2", "s3"]  # once each
    for entry in entries:
        raw = blob(tmp_path, entry["seq"])
        assert raw.endswith(b"</message>") and b"bodx" not in raw
