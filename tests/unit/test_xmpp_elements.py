"""Stanza elements built from their own bytes by the thread's shared parser: the same trees
slixmpp's per-connection parser made, and a malformed stanza harms no other."""

import xml.etree.ElementTree as ET

import pytest

from guardmail.channels.xmpp import elements
from guardmail.channels.xmpp.elements import ElementError, build, declarations, stream_root
from tests.unit.test_xmpp_tee import HEADER, STANZAS

OTHER_HEADER = (
    b"<stream:stream xmlns:db=\"jabber:server:dialback\" xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='o' version='1.0'>"
)


def reference(header: bytes, raw: bytes) -> ET.Element:
    """What one parser reading the whole stream gives (slixmpp's way)."""
    return ET.fromstring(header[header.index(b"<stream") :] + raw + b"</stream:stream>")[0]


@pytest.mark.parametrize("header", [HEADER, OTHER_HEADER])
def test_elements_equal_a_whole_stream_parse(header: bytes) -> None:
    declared = declarations(header)
    for _ in range(3):  # the same shared parser, stanza after stanza
        for raw in STANZAS:
            assert ET.tostring(build(declared, raw)) == ET.tostring(reference(header, raw))


def test_the_stream_root_carries_the_header_attributes() -> None:
    root = stream_root(HEADER)
    assert root.tag == "{http://etherx.jabber.org/streams}stream"
    assert root.get("id") == "a>b/c" and root.get("version") == "1.0"


@pytest.mark.parametrize(
    "bad",
    [
        b"<message><body>&bogus;</body></message>",
        b"<message><x:y/></message>",  # an undeclared prefix
        b"<message>\xff</message>",  # not UTF-8
        b"<message/><message/>",  # two elements
        b"<message>",  # not whole
        b"<message to=v>x</message>",  # an unquoted attribute (the slicer does not check them)
    ],
)
def test_a_malformed_stanza_raises_and_the_next_one_of_any_stream_builds(bad: bytes) -> None:
    declared = declarations(HEADER)
    with pytest.raises(ElementError):
        build(declared, bad)
    assert build(declared, STANZAS[0]).tag == "{jabber:client}message"
    assert build(declarations(OTHER_HEADER), STANZAS[2]).tag == "{jabber:client}presence"


def test_a_parser_is_renewed_and_still_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elements, "RENEW_STANZAS", 3)
    declared = declarations(HEADER)
    for n in range(10):
        raw = STANZAS[n % len(STANZAS)]
        assert ET.tostring(build(declared, raw)) == ET.tostring(reference(HEADER, raw))
