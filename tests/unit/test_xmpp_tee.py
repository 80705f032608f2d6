"""The byte-exact stanza slicer: however the stream is chunked, each stanza's bytes are the
original ones."""

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.channels.xmpp import tee
from guardmail.channels.xmpp.tee import SliceError, StanzaSlicer, slice_stream

HEADER = (
    b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='a>b/c' from=\"example.org\" "
    b"version='1.0'>"
)

# Unusual but valid: attribute order and quoting, > and / inside attribute values, character
# and entity references, CDATA, namespace prefixes declared on the stanza, empty elements,
# nested empty elements right before the parent's end tag, multibyte UTF-8, whitespace inside tags.
STANZAS = [
    b"<message type=\"chat\" to='victim@example.org'"
    b" from='st\xc3\xa4lker@example.net/\xf0\x9f\x98\x80' id='1'>"
    b"<body>I &lt;3 &#x1F600; &#128512; &amp; \xe2\x80\x8b<![CDATA[<not>a tag</not>]]>"
    b"</body></message>",
    b"<x/>",
    b"<presence\n\tfrom = \"s@example.net\"\r\n  type='subscribe' note='>/&lt;&gt;&#34;\"'\n/>",
    b"<message from='s@example.net'><c:composing xmlns:c='http://jabber.org/protocol/chatstates'/>"
    b"</message>",
    b"<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='a@b'/>"
    b"<item jid='c@d'><group>\xe5\x8f\x8b</group></item></query></iq>",
    b"<message from='s@example.net'><body></body></message >",
    b"<message from='s@example.net'><body>" + "\u00e9\u4e2d\U0001f600".encode() * 40 + b"</body>"
    b"</message>",
]
STREAM = HEADER + b"\n" + b" \t\r\n".join(STANZAS) + b"  "


def test_every_single_split_position_gives_the_original_stanzas_and_header() -> None:
    for cut in range(len(STREAM) + 1):
        header, slices = slice_stream([STREAM[:cut], STREAM[cut:]])
        assert header == HEADER, cut
        assert [s.raw for s in slices] == STANZAS, cut


def test_every_two_split_positions_around_each_stanza_boundary() -> None:
    # Exhaustive over pairs of cuts is ~2e5 parses; take every pair within 12 bytes of a
    # stanza's start or end, where the index bookkeeping is hardest.
    edges: set[int] = set()
    at = 0
    for raw in STANZAS:
        at = STREAM.index(raw, at)
        for edge in (at, at + len(raw)):
            edges.update(range(max(edge - 12, 0), min(edge + 12, len(STREAM)) + 1))
        at += len(raw)
    for a in sorted(edges):
        for b in sorted(e for e in edges if e >= a):
            _, slices = slice_stream([STREAM[:a], STREAM[a:b], STREAM[b:]])
            assert [s.raw for s in slices] == STANZAS, (a, b)


def test_byte_at_a_time() -> None:
    header, slices = slice_stream([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert header == HEADER
    assert [s.raw for s in slices] == STANZAS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in zip(points, points[1:], strict=False)]
    header, slices = slice_stream(chunks)
    assert header == HEADER
    assert [s.raw for s in slices] == STANZAS


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<&]"),
            max_size=30,
        ),
        min_size=1,
        max_size=5,
    ),
    st.data(),
)
def test_generated_bodies_any_chunking(bodies: list[str], data: st.DataObject) -> None:
    stanzas = [
        f"<message to='v@e' type=\"chat\"><body>{b}</body><x xmlns='urn:x'/></message>".encode()
        for b in bodies
    ]
    stream = HEADER + b"".join(stanzas)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10))
    points = [0, *sorted(cuts), len(stream)]
    _, slices = slice_stream([stream[a:b] for a, b in zip(points, points[1:], strict=False)])
    assert [s.raw for s in slices] == stanzas


def test_offsets_tags_and_stanzas_are_reported_as_soon_as_complete() -> None:
    slicer = StanzaSlicer()
    assert slicer.feed(HEADER) == []
    assert slicer.header == HEADER
    first = slicer.feed(STANZAS[0][:-1])
    assert first == []
    done = slicer.feed(STANZAS[0][-1:] + b"<x/>")
    assert [(s.raw, s.offset, s.tag) for s in done] == [
        (STANZAS[0], len(HEADER), "{jabber:client}message"),
        (b"<x/>", len(HEADER) + len(STANZAS[0]), "{jabber:client}x"),
    ]


def test_only_the_stanza_in_progress_is_kept_in_memory() -> None:
    slicer = StanzaSlicer()
    slicer.feed(HEADER)
    for _ in range(1000):
        slicer.feed(STANZAS[0] + b" ")
    slicer.feed(STANZAS[0][:10])
    assert len(slicer._buf) <= len(STANZAS[0]) + 1


def test_malformed_stream_raises_and_stays_broken() -> None:
    slicer = StanzaSlicer()
    slicer.feed(HEADER)
    with pytest.raises(SliceError, match="not well-formed"):
        slicer.feed(b"<message><body></message>")
    with pytest.raises(SliceError):
        slicer.feed(b"<x/>")


def test_undeclared_prefix_is_refused_as_slixmpp_refuses_it() -> None:
    slicer = StanzaSlicer()
    slicer.feed(HEADER)
    with pytest.raises(SliceError, match="unbound prefix"):
        slicer.feed(b"<foo:bar/>")


def test_stream_end_and_empty_stream() -> None:
    header, slices = slice_stream([HEADER, b"</stream:stream>"])
    assert header == HEADER and slices == []


def test_comments_processing_instructions_and_cdata_that_look_like_tags_stay_inside() -> None:
    stanzas = [
        b"<message><!-- </message> --><body>a</body><?pi </message>?></message>",
        b"<message><body><![CDATA[</body></message><message>]]></body></message>",
        b"<message a='>' b=\"</message>\"><body/></message>",
    ]
    stream = HEADER + b"".join(stanzas)
    for size in (1, 2, 5, 64):
        _, slices = slice_stream([stream[i : i + size] for i in range(0, len(stream), size)])
        assert [s.raw for s in slices] == stanzas, size


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER[21:], "DOCTYPE"),
        (HEADER + b"<message><!DOCTYPE x></message>", "DOCTYPE"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEADER[21:], "UTF-8"),
        (HEADER + b"<message><body></message>", "not well-formed"),
        (HEADER + b"</other:stream>", "not well-formed"),
        (b"x" * 70_000, "no stream header"),
    ],
)
def test_what_xmpp_forbids_is_refused(stream: bytes, why: str) -> None:
    with pytest.raises(SliceError, match=why):
        slice_stream([stream])


def test_the_stream_end_tag_ends_the_stream() -> None:
    slicer = StanzaSlicer()
    done = slicer.feed(HEADER + STANZAS[1] + b"</stream:str")
    assert [s.raw for s in done] == [STANZAS[1]] and not slicer.ended
    assert slicer.feed(b"eam>") == [] and slicer.ended
    assert slicer.feed(STANZAS[1]) == []  # nothing after the end is read


def test_an_incomplete_tag_waits_for_its_closing_bracket() -> None:
    slicer = StanzaSlicer()
    slicer.feed(HEADER)
    parts = [b"<message a='", b"x" * 5000, b"/'", b" b='y'", b">", b"<body>hi</body></message>"]
    out = []
    for part in parts:
        out += slicer.feed(part)
    assert [s.raw for s in out] == [b"".join(parts)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=len(HEADER), max_value=len(STREAM)),
            st.sampled_from(
                [
                    b"",
                    b"<",
                    b">",
                    b"/",
                    b"'",
                    b'"',
                    b"<!--",
                    b"-->",
                    b"<![CDATA[",
                    b"]]>",
                    b"<?",
                    b"</x>",
                ]
            ),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=4,
    ),
    st.lists(st.integers(min_value=0, max_value=len(STREAM) + 40), max_size=8),
)
def test_mangled_streams_give_their_own_bytes_or_a_slice_error(
    edits: list[tuple[int, bytes, int]], cuts: list[int]
) -> None:
    """Markup characters inserted and bytes deleted anywhere after the header: every slice the
    slicer returns is the stream's own bytes at its offset, or it says SliceError; nothing else
    (no other exception, no slice that is not in the stream)."""
    stream = STREAM
    for at, insert, delete in sorted(edits, reverse=True):
        stream = stream[:at] + insert + stream[at + delete :]
    points = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    slicer = StanzaSlicer()
    slices = []
    try:
        for a, b in zip(points, points[1:], strict=False):
            slices += slicer.feed(stream[a:b])
    except SliceError as exc:
        slices += exc.slices
    for s in slices:
        assert stream[s.offset : s.offset + len(s.raw)] == s.raw
        assert s.raw.startswith(b"<") and s.raw.endswith(b">")


# --- bounds: the size of a stanza, and the work of a token sent in many reads ---------------


def test_a_stanza_over_the_limit_is_refused_with_the_stanzas_before_it() -> None:
    """A server (or a federated peer it relays) cannot make the watcher hold an endless stanza:
    past STANZA_LIMIT bytes the stream is refused; the stanzas completed before are given."""
    slicer = StanzaSlicer()
    assert slicer.feed(HEADER) == []
    chunk = b"x" * 65536
    with pytest.raises(SliceError, match="more than 16777216 bytes") as caught:
        slicer.feed(STANZAS[1] + b"<message><body>")
        for _ in range(tee.STANZA_LIMIT // len(chunk) + 1):
            slicer.feed(chunk)
            assert len(slicer._buf) <= tee.STANZA_LIMIT
    assert caught.value.slices == ()  # STANZAS[1] was returned by its own feed
    with pytest.raises(SliceError, match="start a new slicer"):
        slicer.feed(b"</body></message>")


@pytest.mark.parametrize(
    "middle",
    [
        b"<message><body>" + b"a" * 300 + b"</body></message>",  # a stanza
        b"<!--" + b"a" * 300 + b"-->",  # a comment between stanzas
        b"<message a='" + b"a" * 300 + b"'/>",  # one tag
    ],
)
@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_the_limit_holds_however_the_stream_is_chunked(
    monkeypatch: pytest.MonkeyPatch, middle: bytes, size: int
) -> None:
    monkeypatch.setattr(tee, "STANZA_LIMIT", 256)
    stream = HEADER + STANZAS[1] + middle + STANZAS[1]
    slicer = StanzaSlicer()
    got = []
    with pytest.raises(SliceError, match="more than 256 bytes"):
        for at in range(0, len(stream), size):
            got += slicer.feed(stream[at : at + size])
            assert len(slicer._buf) <= 256 + size
    assert got == [] or [s.raw for s in got] == [STANZAS[1]]
    # a stanza of exactly the limit is read
    exact = b"<m>" + b"a" * (256 - 7) + b"</m>"
    assert [s.raw for s in slice_stream([HEADER, exact])[1]] == [exact]


@pytest.mark.parametrize("bad", [b"< message/>", b"<message>a < b</message>", b"<'a'/>"])
def test_a_lone_less_than_is_refused_not_waited_on(bad: bytes) -> None:
    """A "<" that can start no markup would otherwise hold every later byte, waiting."""
    for chunks in ([HEADER + bad], [HEADER, *(bad[i : i + 1] for i in range(len(bad)))]):
        with pytest.raises(SliceError, match="not well-formed"):
            slice_stream(chunks)


class _Counted:
    """A compiled expression that adds to ``work`` the bytes each call may look at."""

    def __init__(self, pattern: re.Pattern[bytes], work: list[int]) -> None:
        self._pattern, self._work = pattern, work

    def match(self, data: bytes, pos: int = 0) -> re.Match[bytes] | None:
        self._work[0] += len(data) - pos
        return self._pattern.match(data, pos)

    def search(self, data: bytes, pos: int = 0) -> re.Match[bytes] | None:
        self._work[0] += len(data) - pos
        return self._pattern.search(data, pos)

    def finditer(self, data: bytes) -> Iterator[re.Match[bytes]]:
        self._work[0] += len(data)
        return self._pattern.finditer(data)


def _count_work(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every expression of the slicer counted (the text between tokens is skipped by one find
    per token, not counted)."""
    work = [0]
    for name, value in list(vars(tee).items()):
        if isinstance(value, re.Pattern):
            monkeypatch.setattr(tee, name, _Counted(value, work))
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, re.Pattern) for v in value.values())
        ):
            monkeypatch.setattr(tee, name, {k: _Counted(v, work) for k, v in value.items()})
    return work


@pytest.mark.parametrize(
    "stanza",
    [
        b"<message><!--" + b"> x " * 25_000 + b"--><body/></message>",
        b"<message><body><![CDATA[" + b"> x " * 25_000 + b"]]></body></message>",
        b"<message><?pi " + b"> x " * 25_000 + b"?></message>",
        b"<message a='" + b"> x " * 25_000 + b"' b=\"" + b"'>" * 5000 + b'"><body/></message>',
        b"<message/><!--" + b"> x " * 25_000 + b"-->",  # between stanzas
    ],
)
def test_a_long_token_sent_in_many_reads_is_looked_at_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch, stanza: bytes
) -> None:
    """Each read brings a ">" that ends no token: the token in progress is not matched again
    from its start at each read (quadratic: ~25,000 reads of a 100 KB token), only its new
    bytes are searched for its end. Work is counted as the bytes each expression may look at."""
    work = _count_work(monkeypatch)
    stream = HEADER + stanza
    header, slices = slice_stream([stream[i : i + 4] for i in range(0, len(stream), 4)])
    whole = b"<message/>" if stanza.startswith(b"<message/>") else stanza
    assert header == HEADER and [s.raw for s in slices] == [whole]
    assert work[0] <= 8 * len(stream), work[0]


_PIECES = [
    b"<message a='>' b=\"'>\">",
    b"</message>",
    b"<body>",
    b"</body>",
    b"text > more",
    b"<!-- a > -- b ->-->",
    b"<![CDATA[ ]> ]]]>",
    b"<?pi ? > ?>",
    b"<x/>",
    b'<y a="/>" />',
    b" ",
    b"<",
    b">",
    b"'",
    b"<!",
    b"<!-",
    b"]]>",
    b"-->",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=30),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_resumed_searches_slice_as_one_read_does(pieces: list[bytes], cuts: list[int]) -> None:
    """Whatever the bytes (valid or not) and however they are chunked, the slices and whether
    the stream is refused are those of the same bytes in one read, where no token is ever
    looked at twice."""
    stream = HEADER + b"".join(pieces)

    def run(chunks: list[bytes]) -> tuple[list[tuple[bytes, int, str]], bool]:
        slicer, out, refused = StanzaSlicer(), [], False
        try:
            for chunk in chunks:
                out += slicer.feed(chunk)
        except SliceError as exc:
            out, refused = out + list(exc.slices), True
        return [(s.raw, s.offset, s.tag) for s in out], refused

    points = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    chunked = run([stream[a:b] for a, b in zip(points, points[1:], strict=False)])
    assert chunked == run([stream])
