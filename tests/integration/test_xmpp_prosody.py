"""The real daemon watching an account on a real Prosody (loopback, its own CA): offenders' stanzas
archived byte-exact, aliases, friends untouched, subscription requests, the server blocklist
following the offender list, the archive caught up after downtime and a server restart, errors.

Other people's clients are raw sockets (tests/servers/prosody.py): they write exact bytes and
show what the server delivered to them.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from tests.conftest import wait_for
from tests.integration import guardmail_proc
from tests.integration.guardmail_proc import guardmail
from tests.servers.ports import free_ports
from tests.servers.prosody import DOMAIN, MUC, Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration

USERS = {
    "victim": "victim-pw",
    "stalker": "stalker-pw",
    "st4lker2": "alias-pw",
    "friend": "friend-pw",
    "stranger": "stranger-pw",
}
VICTIM = f"victim@{DOMAIN}"


class Daemon(guardmail_proc.Daemon):
    def count(self, needle: str) -> int:
        return self.log_text().count(needle)


class Tap:
    """A loopback TCP proxy in front of the server that records what the server sends (or, with
    ``to_server``, what the clients send)."""

    def __init__(self, target_port: int, *, to_server: bool = False) -> None:
        (self.port,) = free_ports(1)
        self.target_port = target_port
        self.to_server = to_server
        self.received = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            up, down = (conn, upstream, self.to_server), (upstream, conn, not self.to_server)
            threading.Thread(target=self._pump, args=up, daemon=True).start()
            threading.Thread(target=self._pump, args=down, daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    with self._lock:
                        self.received += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()  # an unclosed socket warns at GC, inside whichever test runs then

    def close(self) -> None:
        self._server.close()


def config_text(
    tmp: Path,
    server: Prosody,
    *,
    port: int | None = None,
    tls: str = "starttls",
    password: str = USERS["victim"],
    ca: bool = True,
    action: str = "quarantine",
    offenders: bool = True,
    mam_sync: float = 1,
    extra: str = "",
) -> str:
    (tmp / "password").write_text(password + "\n")
    offender = f"""\
  - name: Stalker
    jids: [stalker@{DOMAIN}]
    patterns: ["re:^st[a4]lker[0-9]+@"]
    display_names: [Shadow]
    domains: [harass.example]
    action: {action}
"""
    ca_line = f"      ca_file: {server.ca_file}\n" if ca else ""
    return f"""\
state_dir: {tmp}/var
offenders:
{offender if offenders else "  []"}
sources:
  xmpp:
    - name: victim
      jid: {VICTIM}
      host: 127.0.0.1
      port: {port or server.port}
      tls: {tls}
{ca_line}      password_file: {tmp}/password
      mam_sync_seconds: {mam_sync}
      ping_seconds: 2
      timeout_seconds: 5
{extra}"""


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


def start(tmp: Path, started: list[Daemon], name: str = "daemon", *, wait: bool = True) -> Daemon:
    d = Daemon(tmp / "guardmail.yaml", tmp / f"{name}.log")
    started.append(d)
    if wait:
        wait_for(
            lambda: "xmpp.caught_up" in d.log_text() or d.proc.poll() is not None,
            what=f"{name} caught up",
        )
        assert d.proc.poll() is None, d.log_text()
    return d


def peer(server: Prosody, opened: list[Peer], user: str, **kw: object) -> Peer:
    p = server.peer(user, **kw)  # type: ignore[arg-type]
    opened.append(p)
    return p


def archived(tmp: Path) -> list[dict[str, object]]:
    """The journal's archived entries (with their meta), oldest first."""
    storage = SQLiteStorage(tmp / "var" / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            return [json.loads(r.body) for r in tx.journal_rows("default", kind="archived")]
    finally:
        storage.close()


def blob(tmp: Path, seq: object) -> bytes:
    shown = guardmail(tmp / "guardmail.yaml", "evidence", "show", str(seq))
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def meta(entry: dict[str, object]) -> dict[str, str]:
    found = entry["meta"]
    assert isinstance(found, dict)
    return found


def test_offenders_archived_byte_exact_friends_untouched_strangers_quarantined(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    tap = Tap(prosody.port)
    try:
        config = config_text(tmp_path, prosody, port=tap.port, tls="none")
        (tmp_path / "guardmail.yaml").write_text(config + "      strangers: quarantine\n")
        phone = peer(prosody, peers, "victim", resource="phone", priority=5)
        phone.iq(f"<query xmlns='jabber:iq:roster'><item jid='friend@{DOMAIN}'/></query>")
        start(tmp_path, daemons)
        stalker = peer(prosody, peers, "stalker")
        alias = peer(prosody, peers, "st4lker2")
        friend = peer(prosody, peers, "friend")
        stranger = peer(prosody, peers, "stranger")
        stalker.send(
            f"<message to='{VICTIM}' type='chat' id='m1'><body>I &lt;3 you &#x1F600; "
            "caf\u00e9 <![CDATA[<watching>]]></body></message>".encode()
        )
        alias.send(
            f"<message to='{VICTIM}' type='chat' id='m2'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
        friend.send(f"<message to='{VICTIM}' type='chat' id='f1'><body>lunch?</body></message>")
        stranger.send(f"<message to='{VICTIM}' type='chat' id='x1'><body>hello</body></message>")
        got = b"".join(phone.drain(quiet=1.0))
        for needle in (b"id='m1'", b"id='m2'", b"id='f1'", b"id='x1'"):
            assert needle in got  # the person's own client still receives everything
        wait_for(lambda: daemons[0].count("item.quarantined") == 3, what="three quarantined")
        assert not any(b"<message" in s for s in stalker.drain() + alias.drain())  # no receipt
        assert daemons[0].stop() == 0
    finally:
        tap.close()
    # different senders' sessions: the server may deliver them in either order
    entries = sorted(archived(tmp_path), key=lambda e: str(e["message_id"]))
    assert [(e["offender"], e["message_id"]) for e in entries] == [
        ("Stalker", "m1"),
        ("Stalker", "m2"),
        ("stranger (not in the roster)", "x1"),
    ]
    wire = bytes(tap.received)
    for entry in entries:
        raw = blob(tmp_path, entry["seq"])
        assert raw.startswith(b"<message") and raw.endswith(b"</message>")
        assert raw in wire  # exactly the bytes the server sent, not a re-serialisation
        m = meta(entry)
        assert m["via"] == "carbon" and m["stream_header"].startswith("<?xml")
        assert m["stream_header"].encode() in wire and int(m["stream_offset"]) > 0
        assert m["server_cert_sha256"] == ""  # tls: none, on loopback
    first = blob(tmp_path, entries[0]["seq"])
    assert "I &lt;3 you \U0001f600 caf\u00e9 &lt;watching&gt;".encode() in first
    assert meta(entries[0])["stanza_id"]
    assert entries[0]["subject"] == "I <3 you \U0001f600 caf\u00e9 <watching>"
    assert entries[1]["subject"] == "(no body: composing)"
    assert entries[1]["rule"] == "patterns[0]: re:^st[a4]lker[0-9]+@"  # the alias, by pattern


def test_offenders_subscription_request_is_denied_and_archived_others_untouched(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    daemon = start(tmp_path, daemons)
    assert "tls=True" in daemon.log_text()
    stalker = peer(prosody, peers, "stalker")
    friend = peer(prosody, peers, "friend")
    stalker.send(
        f"<presence to='{VICTIM}' type='subscribe'>"
        "<nick xmlns='http://jabber.org/protocol/nick'>Your Admirer</nick></presence>"
    )
    friend.send(f"<presence to='{VICTIM}' type='subscribe'/>")
    denied = stalker.expect(b"type='unsubscribed'", b'type="unsubscribed"')
    assert f"from='{VICTIM}'".encode() in denied or f'from="{VICTIM}"'.encode() in denied
    wait_for(lambda: daemon.count("item.quarantined") == 1, what="request archived")
    # probing guardmail's own resource tells the offender nothing
    stalker.send(
        f"<iq type='get' id='probe' to='{VICTIM}/guardmail'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    probed = stalker.expect(b"id='probe'", b'id="probe"')
    assert b"service-unavailable" in probed
    assert not any(b"subscribed" in s for s in friend.drain(quiet=1.5))  # left pending
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    assert b"friend@localhost" in b"".join(phone.drain(quiet=1.0))  # still asked, on login
    daemon.stop()
    (entry,) = archived(tmp_path)
    assert meta(entry)["via"] == "subscribe" and len(meta(entry)["server_cert_sha256"]) == 64
    assert b"type='subscribe'" in blob(tmp_path, entry["seq"])


def blocklist(phone: Peer) -> set[str]:
    answer = phone.iq("<blocklist xmlns='urn:xmpp:blocking'/>", kind="get")
    items = answer.split(b"<item")[1:]
    return {i.split(b"jid=")[1][1:].split(i.split(b"jid=")[1][:1])[0].decode() for i in items}


def test_server_blocklist_follows_the_offender_list_and_spares_the_persons_own_blocks(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    block = "      server_block: true\n"
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        config_text(tmp_path, prosody, port=prosody.tls_port, tls="implicit", action="block")
        + block
    )
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    phone.iq("<block xmlns='urn:xmpp:blocking'><item jid='mine@elsewhere.example'/></block>")
    daemon = start(tmp_path, daemons)
    wait_for(lambda: "xmpp.blocklist_synced" in daemon.log_text(), what="blocklist synced")
    assert blocklist(phone) == {f"stalker@{DOMAIN}", "harass.example", "mine@elsewhere.example"}
    stalker = peer(prosody, peers, "stalker")
    stalker.send(
        f"<message to='{VICTIM}' type='chat' id='b1'><body>can you hear me</body></message>"
    )
    assert not any(b"id='b1'" in s for s in phone.drain(quiet=1.0))  # dropped by the server
    # The offender leaves the list: reload (SIGHUP) unblocks what guardmail added, only that.
    config.write_text(
        config_text(tmp_path, prosody, port=prosody.tls_port, tls="implicit", offenders=False)
        + block
    )
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.count("xmpp.blocklist_synced") >= 2, what="resynced after reload")
    assert "removed=2" in daemon.log_text()
    assert blocklist(phone) == {"mine@elsewhere.example"}
    daemon.stop()
    assert archived(tmp_path) == []  # blocked by the server: nothing reached anyone


def test_messages_sent_while_down_are_caught_from_the_archive_once(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    # No periodic archive sync: the cursor moves only at each start's catch-up, so the second
    # start reads the live-archived message again and must recognise it.
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody, mam_sync=3600))
    first = start(tmp_path, daemons, "first")
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='d0'><body>live</body></message>")
    wait_for(lambda: first.count("item.quarantined") == 1, what="live message archived")
    assert first.stop() == 0
    for n in (1, 2):
        stalker.send(f"<message to='{VICTIM}' type='chat' id='d{n}'><body>{n}</body></message>")
    friend = peer(prosody, peers, "friend")
    friend.send(f"<message to='{VICTIM}' type='chat' id='f1'><body>hi</body></message>")
    stalker.iq("<ping xmlns='urn:xmpp:ping'/>", kind="get", to=DOMAIN)  # they are stored now
    second = start(tmp_path, daemons, "second")
    assert "results=4" in second.log_text()  # d0 (already archived), d1, d2 and f1
    wait_for(lambda: second.count("item.quarantined") == 2, what="caught up from the archive")
    assert second.stop() == 0
    third = start(tmp_path, daemons, "third")
    assert "results=0" in third.log_text()
    assert third.stop() == 0
    entries = archived(tmp_path)
    assert [e["message_id"] for e in entries] == ["d0", "d1", "d2"]  # once each, not f1
    assert [meta(e)["via"] for e in entries] == ["carbon", "mam", "mam"]
    for entry in entries[1:]:
        m = meta(entry)
        assert "archived copy" in m["evidence"] and m["stamp"]
        raw = blob(tmp_path, entry["seq"])
        assert b"urn:xmpp:mam:2" in raw and m["stanza_id"].encode() in raw
    assert meta(entries[0])["stanza_id"]  # the live one's server id was what matched
    # guardmail's negative priority left the offline messages for the person's own client
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    assert b"id='d1'" in b"".join(phone.drain(quiet=1.0))


def test_vault_failure_keeps_the_stanza_until_the_vault_recovers(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    blobs = tmp_path / "var" / "vault" / "default" / "blobs"
    blobs.parent.mkdir(parents=True)
    daemon = start(tmp_path, daemons)
    blobs.write_text("a file where the blob directory should be")
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='v1'><body>x</body></message>")
    wait_for(lambda: "xmpp.vault_unavailable" in daemon.log_text(), what="vault failure")
    blobs.unlink()
    wait_for(lambda: daemon.count("item.quarantined") == 1, timeout=30, what="after recovery")
    daemon.stop()
    assert [e["message_id"] for e in archived(tmp_path)] == ["v1"]


def test_prosody_restart_mid_session_is_survived(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(
        config_text(tmp_path, prosody, port=prosody.tls_port, tls="implicit")
    )
    daemon = start(tmp_path, daemons)
    prosody.restart()
    wait_for(lambda: "xmpp.disconnected" in daemon.log_text(), what="drop noticed")
    wait_for(lambda: daemon.count("xmpp.connected") >= 2, timeout=30, what="reconnected")
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='r1'><body>back</body></message>")
    wait_for(lambda: daemon.count("item.quarantined") == 1, what="archived after reconnect")
    daemon.stop()
    assert [e["message_id"] for e in archived(tmp_path)] == ["r1"]


def test_muc_private_message_is_found_in_the_archive_and_judged_by_nick(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    daemon = start(tmp_path, daemons)
    room = f"den@{MUC}"
    stalker = peer(prosody, peers, "stalker")
    stalker.send(
        f"<presence to='{room}/Shadow'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    stalker.expect(b"status code='110'", b'status code="110"')
    stalker.iq(
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query>",
        to=room,
    )
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    phone.send(
        f"<presence to='{room}/Victim'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    phone.expect(b"status code='110'", b'status code="110"')
    stalker.send(
        f"<message to='{room}/Victim' type='chat' id='pm1'><body>found you</body></message>"
    )
    assert b"id='pm1'" in phone.expect(b"id='pm1'")
    # Prosody does not carbon-copy MUC private messages: the archive sync finds it.
    wait_for(lambda: daemon.count("item.quarantined") == 1, what="private message archived")
    daemon.stop()
    (entry,) = archived(tmp_path)
    assert meta(entry)["via"] == "mam" and meta(entry)["muc_pm"] == "true"
    assert entry["rule"] == "display_names[0]: Shadow"


def test_wrong_password_is_a_clear_error_and_no_crash(
    prosody: Prosody, tmp_path: Path, daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody, password="nope-123"))
    daemon = start(tmp_path, daemons, wait=False)
    wait_for(lambda: "xmpp.login_failed" in daemon.log_text(), what="login failure logged")
    text = daemon.log_text()
    assert f"login as '{VICTIM}' refused" in text and "retry_in=" in text
    assert "nope-123" not in text  # the password never reaches the log
    assert daemon.proc.poll() is None


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_untrusted_certificate_is_a_clear_error(
    prosody: Prosody, tmp_path: Path, daemons: list[Daemon], tls: str
) -> None:
    port = prosody.tls_port if tls == "implicit" else prosody.port
    (tmp_path / "guardmail.yaml").write_text(
        config_text(tmp_path, prosody, port=port, tls=tls, ca=False)
    )
    daemon = start(tmp_path, daemons, wait=False)
    wait_for(lambda: "xmpp.tls_failed" in daemon.log_text(), what="TLS failure logged")
    assert f"certificate of {DOMAIN} not trusted" in daemon.log_text()
    assert daemon.proc.poll() is None


def test_starttls_required_but_not_offered_sends_no_credentials(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    server = start_prosody(USERS, starttls=False, log_level="debug")
    try:
        (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, server))
        daemon = start(tmp_path, daemons, wait=False)
        wait_for(lambda: "xmpp.tls_failed" in daemon.log_text(), what="refused to go on")
        assert "offers no STARTTLS" in daemon.log_text()
        assert "<auth" not in server.log() and "Authenticated" not in server.log()
    finally:
        for d in daemons:
            d.stop()
        server.stop()


@pytest.fixture
def prosody_without_mam() -> Iterator[Prosody]:
    # Without mod_mam Prosody neither adds stanza-ids nor strips forged ones, nor advertises
    # urn:xmpp:sid:0: a sender's stanza-id then reaches the watcher as written.
    server = start_prosody(USERS, extra='modules_disabled = { "s2s"; "mam" }')
    yield server
    server.stop()


def test_forged_stanza_ids_and_headlines_are_judged_and_archived_every_time(
    prosody_without_mam: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    server = prosody_without_mam
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, server))
    peer(server, peers, "victim", resource="phone", priority=5)
    daemon = start(tmp_path, daemons, wait=False)
    wait_for(lambda: "xmpp.mam_unavailable" in daemon.log_text(), what="session set up")
    assert "trusted=False" in daemon.log_text()
    stalker = peer(server, peers, "stalker")
    forged = f"<stanza-id xmlns='urn:xmpp:sid:0' by='{VICTIM}' id='earlier'/>"
    for n in (1, 2):  # the same forged id on two different messages
        stalker.send(
            f"<message to='{VICTIM}' type='chat' id='c{n}'><body>{n}</body>{forged}</message>"
        )
    # A headline (clients pop these up) to guardmail's own resource: no carbon copies them.
    stalker.send(
        f"<message to='{VICTIM}/guardmail' type='headline' id='h1'><body>I see you</body></message>"
    )
    wait_for(lambda: daemon.count("item.quarantined") == 3, what="three quarantined")
    assert daemon.stop() == 0
    entries = sorted(archived(tmp_path), key=lambda e: str(e["message_id"]))
    assert [e["message_id"] for e in entries] == ["c1", "c2", "h1"]
    assert all("stanza_id" not in meta(e) for e in entries)


def test_a_flood_of_offender_stanzas_is_archived_in_groups_in_arrival_order(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    daemon = start(tmp_path, daemons)
    stalker = peer(prosody, peers, "stalker")
    count = 200
    stalker.send(
        "".join(
            f"<message to='{VICTIM}' type='chat' id='flood{n}'><body>{n}</body></message>"
            for n in range(count)
        ).encode()
    )
    phone.drain(quiet=1.0)
    wait_for(lambda: daemon.count("item.quarantined") == count, what="the flood quarantined")
    assert daemon.stop() == 0
    entries = archived(tmp_path)
    # One sender's session: the server delivers in order, and the journal keeps that order.
    assert [e["message_id"] for e in entries] == [f"flood{n}" for n in range(count)]
    storage = SQLiteStorage(tmp_path / "var" / "guardmail.sqlite3")
    try:
        with storage.read() as tx:
            heads = list(tx.tree_heads("default"))
            rows = list(tx.journal_rows("default"))
    finally:
        storage.close()
    assert len(rows) == 2 * count  # each archived, then its action journaled
    # One signed head per group: one commit per item would have signed 400.
    assert len(heads) < count, f"{len(heads)} commits for {len(rows)} entries"
    checked = guardmail(tmp_path / "guardmail.yaml", "evidence", "verify")
    assert checked.returncode == 0, checked.stdout
