"""Who sent a stanza and how it reached the watcher: table-driven, on parsed elements."""

import xml.etree.ElementTree as ET

import pytest

from guardmail.channels.xmpp.stanza import Incoming, Via, fingerprint, read_stanza
from guardmail.core.item import Identity

ME = "victim@example.org"
NS = "xmlns='jabber:client'"


def read(text: str) -> object:
    return read_stanza(ET.fromstring(text), account_bare=ME)


def jids(text: str) -> tuple[Identity, ...]:
    found = read_stanza(ET.fromstring(text), account_bare=ME)
    assert found is not None
    return found.identities


@pytest.mark.parametrize(
    ("stanza", "via", "sender"),
    [
        (
            f"<message {NS} from='s@x.net/r' type='chat'><body>hi</body></message>",
            "message",
            "s@x.net/r",
        ),
        (
            f"<message {NS} from='s@x.net'><body>no type: normal</body></message>",
            "message",
            "s@x.net",
        ),
        # body-less messages are judged too: chat states, receipts, markers
        (
            f"<message {NS} from='s@x.net/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "message",
            "s@x.net/r",
        ),
        (f"<presence {NS} from='s@x.net' type='subscribe'/>", "subscribe", "s@x.net"),
        # a carbon from the account itself: the inner sender is judged
        (
            f"<message {NS} from='{ME}' to='{ME}/gm' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='s@x.net/p' "
            f"to='{ME}/phone' type='chat'><body>hi</body></message>"
            "</forwarded></received></message>",
            "carbon",
            "s@x.net/p",
        ),
        # a "carbon" from someone else is a forgery: judged as that someone's message
        (
            f"<message {NS} from='s@x.net/r' type='chat'><received xmlns='urn:xmpp:carbons:2'>"
            "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='friend@y' "
            "type='chat'/></forwarded></received></message>",
            "message",
            "s@x.net/r",
        ),
    ],
)
def test_judged_stanzas(stanza: str, via: str, sender: str) -> None:
    found = read_stanza(ET.fromstring(stanza), account_bare=ME)
    assert found is not None
    assert (str(found.via), found.sender) == (via, sender)
    assert found.identities[0] == Identity(source="jid", address=sender)


@pytest.mark.parametrize(
    "stanza",
    [
        f"<message {NS} from='room@muc.x/nick' type='groupchat'><body>hi</body></message>",
        f"<message {NS} from='s@x.net' type='error'/>",
        f"<message {NS} to='{ME}'><body>from my own server or account</body></message>",
        f"<message {NS} from='{ME}/phone' type='chat'><body>my other client</body></message>",
        # what the victim sent from another client
        f"<message {NS} from='{ME}' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded "
        "xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='victim@example.org/p' "
        "to='s@x.net' type='chat'><body>leave me alone</body></message>"
        "</forwarded></sent></message>",
        f"<presence {NS} from='s@x.net/r'/>",
        f"<presence {NS} from='s@x.net' type='subscribed'/>",
        f"<presence {NS} from='{ME}' type='subscribe'/>",
        f"<iq {NS} from='s@x.net' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
    ],
)
def test_left_alone(stanza: str) -> None:
    assert read(stanza) is None


MAM_RESULT = (
    f"<message {NS} to='{ME}/gm'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='A1'>"
    "<forwarded xmlns='urn:xmpp:forward:0'>"
    "<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/>"
    "<message xmlns='jabber:client' from='{sender}' to='{to}' type='chat' id='m7'>"
    "<body>archived</body></message></forwarded></result></message>"
)


def test_archive_result_from_someone_is_judged_with_its_server_id_and_stamp() -> None:
    found = read_stanza(
        ET.fromstring(MAM_RESULT.format(sender="s@x.net/r", to=ME)), account_bare=ME
    )
    assert found is not None
    assert found.via is Via.MAM and found.judged
    assert (found.sender, found.stanza_id, found.query_id) == ("s@x.net/r", "A1", "q1")
    assert (found.stamp, found.message_id) == ("2026-01-02T03:04:05Z", "m7")
    assert found.summary.subject == "archived" and found.summary.date == found.stamp


def test_archive_result_of_own_message_is_counted_not_judged() -> None:
    found = read_stanza(
        ET.fromstring(MAM_RESULT.format(sender=f"{ME}/phone", to="s@x.net")), account_bare=ME
    )
    assert found is not None
    assert found.via is Via.MAM and not found.judged and found.stanza_id == "A1"


def test_archive_result_from_a_stranger_is_a_plain_message_from_them() -> None:
    forged = MAM_RESULT.format(sender="friend@y", to=ME).replace(f"to='{ME}/gm'", "from='s@x.net'")
    found = read_stanza(ET.fromstring(forged), account_bare=ME)
    assert found is not None and found.via is Via.MESSAGE and found.sender == "s@x.net"


def test_server_stanza_id_is_only_taken_from_the_account_itself() -> None:
    text = (
        f"<message {NS} from='s@x.net/r' type='chat'><body>x</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='s@x.net' id='forged'/>"
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='Victim@Example.org' id='real'/></message>"
    )
    found = read_stanza(ET.fromstring(text), account_bare=ME, trust_stanza_id=True)
    assert found is not None and found.stanza_id == "real"


def test_a_stanza_id_is_ignored_where_the_server_does_not_advertise_them() -> None:
    # XEP-0359: without urn:xmpp:sid:0 on the account, the server may pass a forged id through.
    text = (
        f"<message {NS} from='s@x.net/r' type='chat'><body>x</body>"
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ME}' id='an-earlier-message'/></message>"
    )
    found = read_stanza(ET.fromstring(text), account_bare=ME)
    assert found is not None and found.stanza_id is None


@pytest.mark.parametrize(
    "stanza",
    [
        f"<message {NS} from='s@x.net/r' type='headline'><body>I see you</body></message>",
        f"<message {NS} from='s@x.net/r' type='headline'><subject>news</subject></message>",
        f"<message {NS} from='s@x.net/r' type='error'><body>still here</body>"
        "<error type='cancel'><service-unavailable "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    ],
)
def test_headline_and_error_messages_a_client_shows_are_judged(stanza: str) -> None:
    found = read_stanza(ET.fromstring(stanza), account_bare=ME)
    assert found is not None and found.via is Via.MESSAGE and found.sender == "s@x.net/r"


def test_a_bodiless_error_is_a_bounce_notice_and_left_alone() -> None:
    text = (
        f"<message {NS} from='s@x.net/r' type='error'><error type='cancel'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    )
    assert read_stanza(ET.fromstring(text), account_bare=ME) is None


def test_muc_private_message_gives_nick_and_every_real_jid_the_room_reveals() -> None:
    text = (
        f"<message {NS} from='room@muc.x/Shadow' type='chat'><body>psst</body>"
        "<nick xmlns='http://jabber.org/protocol/nick'>Sh4d0w</nick>"
        "<x xmlns='http://jabber.org/protocol/muc#user'><item jid='s@x.net/laptop'/>"
        "<invite from='s@x.net'/></x>"
        "<addresses xmlns='http://jabber.org/protocol/address'>"
        "<address type='ofrom' jid='alias@x.net'/><address type='to' jid='ignored@x'/></addresses>"
        "</message>"
    )
    found = read_stanza(ET.fromstring(text), account_bare=ME)
    assert found is not None and found.muc_pm
    assert found.identities == (
        Identity(source="jid", address="room@muc.x/Shadow", display_name="Shadow"),
        Identity(source="jid", display_name="Sh4d0w"),
        Identity(source="jid", address="s@x.net/laptop"),
        Identity(source="jid", address="s@x.net"),
        Identity(source="jid", address="alias@x.net"),
    )


def test_nickname_of_a_subscription_request_is_a_display_name() -> None:
    text = (
        f"<presence {NS} from='new@x.net' type='subscribe'>"
        "<nick xmlns='http://jabber.org/protocol/nick'>Old Friend</nick></presence>"
    )
    assert jids(text) == (Identity(source="jid", address="new@x.net", display_name="Old Friend"),)


def test_summary_is_subject_or_first_line_of_body_or_what_the_stanza_holds() -> None:
    def subject(text: str) -> str:
        found = read_stanza(ET.fromstring(text), account_bare=ME)
        assert found is not None
        return found.summary.subject

    base = f"<message {NS} from='s@x.net' type='chat'>"
    assert subject(base + "<subject>Re: us</subject><body>b</body></message>") == "Re: us"
    assert subject(base + "<body>  line one\nline two</body></message>") == "line one"
    assert subject(base + "<body>" + "x" * 900 + "</body></message>") == "x" * 200
    chat_state = "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    assert subject(base + chat_state + "</message>") == "(no body: active)"


def test_the_servers_stanza_id_is_the_last_one_it_wrote() -> None:
    # Prosody 0.12 passes a sender's forged ids on in carbons and appends its own after them.
    forged = "".join(
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ME}' id='forged{i}'/>" for i in range(3)
    )
    text = (
        f"<message {NS} from='s@x.net/r' type='chat'><body>x</body>{forged}"
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ME}' id='server'/></message>"
    )
    found = read_stanza(ET.fromstring(text), account_bare=ME, trust_stanza_id=True)
    assert found is not None and found.stanza_id == "server"


def test_two_messages_under_one_id_have_different_fingerprints() -> None:
    def read(body: str, mid: str) -> Incoming:
        text = (
            f"<message {NS} from='S@x.net/r' type='chat' id='{mid}'><body>{body}</body></message>"
        )
        found = read_stanza(ET.fromstring(text), account_bare=ME)
        assert found is not None
        return found

    assert fingerprint(read("one", "a")) == fingerprint(read("one", "a"))
    assert fingerprint(read("one", "a")) != fingerprint(read("two", "a"))
    assert fingerprint(read("one", "a")) != fingerprint(read("one", "b"))


def test_a_message_kept_offline_by_the_server_keeps_its_delay_stamp() -> None:
    found = read(
        f"<message {NS} from='s@x.net/r' type='chat'><body>while you were away</body>"
        "<delay xmlns='urn:xmpp:delay' from='example.org' stamp='2026-03-04T05:06:07Z'/>"
        "</message>"
    )
    assert isinstance(found, Incoming) and found.stamp == "2026-03-04T05:06:07Z"
    live = read(f"<message {NS} from='s@x.net/r' type='chat'><body>now</body></message>")
    assert isinstance(live, Incoming) and live.stamp is None
