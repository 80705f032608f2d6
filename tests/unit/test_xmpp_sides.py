"""Reading the person's own messages and group-chat messages from parsed stanzas (pure)."""

import xml.etree.ElementTree as ET

import pytest

from guardmail.channels.xmpp.sides import (
    MAX_OCCUPANTS,
    Occupants,
    read_groupchat,
    read_outgoing,
)

ME = "victim@localhost"
C = "xmlns='jabber:client'"


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def sent_carbon(inner: str, outer_from: str = ME) -> str:
    return (
        f"<message {C} from='{outer_from}' to='{ME}/guardmail'>"
        "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"{inner}</forwarded></sent></message>"
    )


def mam(inner: str) -> str:
    return (
        f"<message {C} to='{ME}/guardmail'><result xmlns='urn:xmpp:mam:2' queryid='q' id='r9'>"
        "<forwarded xmlns='urn:xmpp:forward:0'>"
        "<delay xmlns='urn:xmpp:delay' stamp='2026-12-01T10:00:00Z'/>"
        f"{inner}</forwarded></result></message>"
    )


MINE = (
    f"<message {C} from='{ME}/phone' to='Stalker@localhost/x' type='chat' id='s1'>"
    "<body>Stop.\nnow</body></message>"
)


def test_a_sent_carbon_is_the_person_s_message_judged_by_its_recipient() -> None:
    out = read_outgoing(parse(sent_carbon(MINE)), account_bare=ME)
    assert out is not None and out.via == "sent carbon" and out.message_id == "s1"
    assert [(i.source, i.address) for i in out.identities] == [("jid", "Stalker@localhost")]
    assert out.summary.subject == "Stop."


def test_an_archive_result_of_the_person_s_message_is_theirs_with_its_result_id() -> None:
    out = read_outgoing(parse(mam(MINE)), account_bare=ME)
    assert out is not None and out.via == "mam" and out.result_id == "r9"


@pytest.mark.parametrize(
    "stanza",
    [
        sent_carbon(MINE, outer_from="stalker@localhost"),  # a forged carbon from someone else
        sent_carbon(MINE.replace("to='Stalker@localhost/x'", f"to='{ME}/laptop'")),  # to self
        sent_carbon(MINE.replace("type='chat'", "type='groupchat'")),  # to a room
        mam(MINE.replace(f"from='{ME}/phone'", "from='stalker@localhost/x'")),  # their message
        f"<message {C} from='stalker@localhost' type='chat'><body>x</body></message>",
        sent_carbon(MINE.replace(" to='Stalker@localhost/x'", "")),  # no recipient
    ],
)
def test_what_is_not_the_person_s_own_message_is_not_taken(stanza: str) -> None:
    assert read_outgoing(parse(stanza), account_bare=ME) is None


ROOM = "den@conference.localhost"


def presence(nick: str, real: str | None = None, kind: str = "") -> ET.Element:
    item = f"<item affiliation='none' role='participant'{f' jid={real!r}' if real else ''}/>"
    typ = f" type='{kind}'" if kind else ""
    return parse(
        f"<presence {C} from='{ROOM}/{nick}'{typ}>"
        f"<x xmlns='http://jabber.org/protocol/muc#user'>{item}</x></presence>"
    )


def groupchat(nick: str, room: str = ROOM) -> ET.Element:
    sender = f"{room}/{nick}" if nick else room
    return parse(
        f"<message {C} from='{sender}' type='groupchat' id='g1'><body>hello</body></message>"
    )


def test_a_room_message_carries_the_nick_and_the_real_jid_once_presence_revealed_it() -> None:
    occupants = Occupants({"Den@conference.localhost"})
    msg = read_groupchat(groupchat("Shadow"), occupants)
    assert msg is not None and msg.real_jid is None
    assert [(i.source, i.address, i.display_name) for i in msg.identities] == [
        ("nick", None, "Shadow")
    ]
    assert occupants.presence(presence("Shadow", "stalker@localhost/x"))
    msg = read_groupchat(groupchat("Shadow"), occupants)
    assert msg is not None and msg.real_jid == "stalker@localhost/x" and msg.room == ROOM
    assert msg.identities[0].address == "stalker@localhost/x"
    assert occupants.presence(presence("Shadow", kind="unavailable"))
    assert occupants.real_jid(ROOM, "Shadow") is None


@pytest.mark.parametrize(
    "element",
    [
        groupchat("Shadow", room="other@conference.localhost"),  # a room not watched
        groupchat(""),  # the room's own message (subject, notices)
        parse(f"<message {C} from='{ROOM}/Shadow' type='chat'><body>pm</body></message>"),
    ],
)
def test_only_occupant_messages_of_watched_rooms_are_group_chat(element: ET.Element) -> None:
    assert read_groupchat(element, Occupants({ROOM})) is None


def test_occupants_remembered_are_bounded() -> None:
    occupants = Occupants({ROOM})
    for n in range(MAX_OCCUPANTS + 5):
        occupants.presence(presence(f"n{n}", f"u{n}@localhost"))
    assert occupants.real_jid(ROOM, "n0") is None
    assert occupants.real_jid(ROOM, f"n{MAX_OCCUPANTS + 4}") == f"u{MAX_OCCUPANTS + 4}@localhost"


def test_a_reused_message_id_with_another_text_is_another_room_message() -> None:
    occupants = Occupants({ROOM})
    first = read_groupchat(groupchat("Shadow"), occupants)
    other = parse(
        f"<message {C} from='{ROOM}/Shadow' type='groupchat' id='g1'><body>bye</body></message>"
    )
    second = read_groupchat(other, occupants)
    assert first is not None and second is not None and first.key and second.key
    assert first.key != second.key
    again = read_groupchat(groupchat("Shadow"), occupants)
    assert again is not None and again.key == first.key
