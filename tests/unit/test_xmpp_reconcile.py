"""Which archived entries the XMPP source reconciles after a crash (evidence.where_now)."""

from __future__ import annotations

from guardmail.channels.xmpp.evidence import RECONCILED, where_now


def entry(ref: object, via: str = "carbon") -> dict[str, object]:
    return {"source_ref": ref, "meta": {"via": via, "from": "stalker@localhost"}}


def test_a_message_of_this_account_needs_nothing_more() -> None:
    for via in ("carbon", "message", "mam"):
        assert where_now(entry("xmpp:victim:abc", via), source="xmpp:victim") == RECONCILED


def test_other_sources_and_unreadable_entries_are_left_alone() -> None:
    assert where_now(entry("xmpp:victim2:abc"), source="xmpp:victim") is None
    assert where_now(entry("maildir:/home/x/Maildir/new/1"), source="xmpp:victim") is None
    assert where_now(entry(None), source="xmpp:victim") is None
    assert where_now({"source_ref": "xmpp:victim:abc"}, source="xmpp:victim") is None


def test_a_subscription_request_is_left_to_the_server_repeating_it() -> None:
    assert where_now(entry("xmpp:victim:s:1", "subscribe"), source="xmpp:victim") is None
