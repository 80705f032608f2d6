"""The server blocklist guardmail keeps: what the offender list asks for, and the smallest change
that gets there without touching what the person blocked by hand."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from guardmail.channels.xmpp import blocklist, queries
from guardmail.channels.xmpp.client import WatchClient, shared_context
from guardmail.core.rules import Action, OffenderRule, RuleSet


def test_only_block_offenders_jids_and_domains_are_wanted_in_canonical_form() -> None:
    rules = RuleSet(
        [
            OffenderRule(
                name="A",
                jids=("Stalker@Example.NET", "burner@x.org/phone", "not a jid@@"),
                domains=("harass.example", "@evil.example."),
                patterns=("*@burner.example",),
                action=Action.BLOCK,
            ),
            OffenderRule(name="Q", jids=("watched@x.org",), action=Action.QUARANTINE),
        ]
    )
    assert blocklist.wanted(rules) == {
        "stalker@example.net",
        "burner@x.org",
        "harass.example",
        "evil.example",
    }


@pytest.mark.parametrize(
    ("wanted", "current", "managed", "add", "remove", "after"),
    [
        # first sync: add what is missing, leave the person's own blocks alone
        ({"a@x"}, {"mine@y"}, set(), {"a@x"}, set(), {"a@x"}),
        # offender removed from the list: unblock what guardmail added, nothing else
        (set(), {"a@x", "mine@y"}, {"a@x"}, set(), {"a@x"}, set()),
        # the person had blocked it already: not ours to remove later
        ({"mine@y"}, {"mine@y"}, set(), set(), set(), set()),
        # someone unblocked an offender on the server: blocked again
        ({"a@x"}, set(), {"a@x"}, {"a@x"}, set(), {"a@x"}),
        # an entry guardmail added and the person removed meanwhile is simply forgotten
        (set(), set(), {"a@x"}, set(), set(), set()),
    ],
)
def test_plan(
    wanted: set[str],
    current: set[str],
    managed: set[str],
    add: set[str],
    remove: set[str],
    after: set[str],
) -> None:
    todo = blocklist.plan(wanted=wanted, current=current, managed=managed)
    assert (set(todo.add), set(todo.remove), set(todo.managed)) == (add, remove, after)


def test_an_empty_unblock_is_never_built() -> None:
    async def go() -> None:
        client = WatchClient(
            jid="v@x.org/gm",
            password="-",
            tls="starttls",
            ssl_context=shared_context(None),
            on_stanza=lambda *_: None,
            connection=1,
        )
        with pytest.raises(ValueError, match="empty unblock"):
            queries.blocklist_change(client, "unblock", [])
        iq = queries.blocklist_change(client, "block", ["b@x", "a@x"])
        assert [i.get("jid") for i in iq.xml.iter("{urn:xmpp:blocking}item")] == ["a@x", "b@x"]
        client.cancel_connection_attempt()

    asyncio.run(go())


def test_archive_query_and_answer() -> None:
    async def go() -> None:
        client = WatchClient(
            jid="v@x.org/gm",
            password="-",
            tls="starttls",
            ssl_context=shared_context(None),
            on_stanza=lambda *_: None,
            connection=1,
        )
        iq = queries.mam_query(
            client, query_id="q", max_items=50, after="A9", start="2026-01-01T00:00:00Z"
        )
        text = str(iq)
        assert 'queryid="q"' in text and "<after>A9</after>" in text and "<max>50</max>" in text
        assert "2026-01-01T00:00:00Z" in text and "urn:xmpp:mam:2" in text
        client.cancel_connection_attempt()

    asyncio.run(go())
    answer = ET.fromstring(
        "<iq xmlns='jabber:client' type='result'><fin xmlns='urn:xmpp:mam:2' complete='true'>"
        "<set xmlns='http://jabber.org/protocol/rsm'><first>A1</first><last>B2</last></set>"
        "</fin></iq>"
    )
    assert queries.mam_fin(answer) == (True, "B2")
    partial = ET.fromstring("<iq xmlns='jabber:client'><fin xmlns='urn:xmpp:mam:2'/></iq>")
    assert queries.mam_fin(partial) == (False, None)
