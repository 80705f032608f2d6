"""Both sides and group chats against a real Prosody: the person's own message to an offender
(a sent carbon, seen by guardmail because another session of the person sent it) is archived
once as ``outgoing`` although the archive holds it too; an offender's messages in rooms the
person is in are archived with the room, the nick and (where the room reveals it) the real
JID, with the room's messages around them as context."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_xmpp_prosody import (
    USERS,
    Daemon,
    archived,
    blob,
    config_text,
    meta,
    peer,
    start,
)
from tests.servers.prosody import DOMAIN, MUC, Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration

MUC_NS = "http://jabber.org/protocol/muc"


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


def test_the_person_s_own_message_to_an_offender_is_archived_once_as_their_side(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    d = start(tmp_path, daemons)
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    stalker = peer(prosody, peers, "stalker")
    phone.send(f"<message to='stalker@{DOMAIN}' type='chat' id='s1'><body>Stop.</body></message>")
    phone.send(f"<message to='friend@{DOMAIN}' type='chat' id='s2'><body>hi</body></message>")
    stalker.expect(b"id='s1'")
    wait_for(lambda: d.count("item.kept") >= 1, what="sent carbon kept")
    # The next archive sync reads both messages back (s1 and s2) and keeps nothing more.
    wait_for(lambda: "results=2 " in d.log_text(), what="the archive sync that holds s1")
    assert d.stop() == 0
    (entry,) = archived(tmp_path)  # once: the archive result of s1 is the same item
    assert entry["direction"] == "outgoing" and entry["offender"] == "Stalker"
    assert entry["to"] == f"stalker@{DOMAIN}" and meta(entry)["via"] == "sent carbon"
    raw = blob(tmp_path, entry["seq"])
    assert raw.startswith(b"<message") and b"urn:xmpp:carbons:2" in raw and b"id='s1'" in raw


def make_room(owner: Peer, room: str, nick: str, *, whois: str) -> None:
    owner.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC_NS}'/></presence>")
    owner.expect(b"status code='110'", b'status code="110"')
    owner.iq(
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        f"<field var='muc#roomconfig_whois'><value>{whois}</value></field>"
        "</x></query>",
        to=room,
    )


def say(who: Peer, room: str, ident: str, text: str) -> None:
    who.send(f"<message to='{room}' type='groupchat' id='{ident}'><body>{text}</body></message>")
    who.expect(f"id='{ident}'".encode())  # the room echoes it: delivered to everyone


def test_an_offender_s_room_messages_are_archived_with_the_room_and_its_context(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    den, hall = f"den@{MUC}", f"hall@{MUC}"
    rooms = f"""\
      room_context: 1
      rooms:
        - jid: {den}
          nick: Victim
        - jid: {hall}
          nick: Victim
"""
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody, extra=rooms))
    stalker = peer(prosody, peers, "stalker")
    make_room(stalker, den, "Shadow", whois="moderators")  # real JIDs hidden from occupants
    make_room(stalker, hall, "Moon", whois="anyone")  # real JIDs shown to every occupant
    friend = peer(prosody, peers, "friend")
    for room in (den, hall):
        friend.send(f"<presence to='{room}/Pal'><x xmlns='{MUC_NS}'/></presence>")
        friend.expect(b"status code='110'", b'status code="110"')
    d = start(tmp_path, daemons)
    for room in (den, hall):
        stalker.expect(f"from='{room}/Victim'".encode(), f'from="{room}/Victim"'.encode())
    say(friend, den, "d1", "morning all")
    say(stalker, den, "d2", "I know where you live")
    say(friend, den, "d3", "leave her alone")
    say(friend, den, "d4", "anyway")
    say(stalker, hall, "h1", "still here")
    # The context entries are logged at debug level; h1 comes after d1-d4 in stream order.
    wait_for(lambda: d.count("item.kept") >= 2, what="both offender messages kept")
    assert d.stop() == 0
    entries = {str(e["message_id"]): e for e in archived(tmp_path)}
    assert set(entries) == {"d1", "d2", "d3", "h1"}  # d4: past the one message of context
    shadow, moon = entries["d2"], entries["h1"]
    assert shadow["offender"] == "Stalker" and shadow["rule"] == "display_names[0]: Shadow"
    assert shadow["muc"] == {"room": den, "nick": "Shadow", "real_jid": None, "flagged": True}
    assert moon["offender"] == "Stalker" and moon["rule"] == f"jids[0]: stalker@{DOMAIN}"
    muc = moon["muc"]
    assert isinstance(muc, dict) and str(muc["real_jid"]).startswith(f"stalker@{DOMAIN}/")
    for ident in ("d1", "d3"):
        context = entries[ident]
        assert context["offender"] is None and context["direction"] == "incoming"
        assert context["muc"] == {
            "room": den,
            "nick": "Pal",
            "real_jid": None,
            "context_of": shadow["seq"],
        }
    raw = blob(tmp_path, shadow["seq"])
    assert raw.startswith(b"<message") and b"I know where you live" in raw
    assert meta(shadow)["via"] == "groupchat" and meta(shadow)["from"] == f"{den}/Shadow"
    # Joining again, guardmail is sent the rooms' recent history (other bytes: with a delay):
    # nothing of it is archived twice; what is new is.
    again = start(tmp_path, daemons, "again")
    stalker.expect(f"from='{den}/Victim'".encode(), f'from="{den}/Victim"'.encode())
    say(friend, den, "d5", "hm")
    say(stalker, den, "d6", "back again")
    wait_for(lambda: again.count("item.kept") >= 1, what="the new offender message kept")
    assert again.stop() == 0
    assert again.count("item.kept") == 1
    assert sorted(str(e["message_id"]) for e in archived(tmp_path)) == sorted(
        ["d1", "d2", "d3", "h1", "d5", "d6"]
    )
