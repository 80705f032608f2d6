"""The scan's header FETCH reader (channels/imap/fetch_reply.py) against imapclient's parser.

Replies are built as imaplib hands them over (its untagged FETCH data: ``(text before the
literal, literal)`` then the text after it, or a line without a literal), with literals of any
bytes (the sender writes them) and framing the fast reader must leave to imapclient.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from guardmail.channels.imap.fetch_reply import read_reply

# What a sender may put in a header section, framing look-alikes included.
HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [b")", b"(", b"{12}", b"\r\n", b"* 1 FETCH (UID 9 ", b"BODY[HEADER] {3}\r\n", b"NIL"]
        ),
        max_size=12,
    ).map(b"".join),
)


@st.composite
def response(draw: st.DrawFn, seq: int, uid: int) -> list[Any]:
    """One well-formed response: UID and RFC822.SIZE before or after the literal, any order."""
    literal = draw(HOSTILE)
    size = draw(st.integers(min_value=0, max_value=10**9))
    items = [f"UID {uid}".encode(), f"RFC822.SIZE {size}".encode()]
    if draw(st.booleans()):
        items.reverse()
    before = draw(st.integers(min_value=0, max_value=2))
    head = b"%d (" % seq + b"".join(i + b" " for i in items[:before])
    part = draw(st.sampled_from([b"BODY[HEADER]", b"BODY[HEADER.FIELDS (FROM REPLY-TO)]"]))
    head += part + b" {%d}" % len(literal)
    tail = b"".join(b" " + i for i in items[before:]) + b")"
    return [(head, literal), tail]


@st.composite
def replies(draw: st.DrawFn, min_size: int = 0) -> list[Any]:
    uids = draw(
        st.lists(
            st.integers(min_value=1, max_value=2**32 - 1),
            unique=True,
            min_size=min_size,
            max_size=8,
        )
    )
    data: list[Any] = []
    for seq, uid in enumerate(uids, start=1):
        data += draw(response(seq, uid))
    return data


# Changes of framing a server may send that the fast reader does not take.
ODD = [
    lambda d: [b"3 (FLAGS (\\Seen) UID 77)", *d],  # an unsolicited FETCH of flags
    lambda d: [*d, (b"4 (UID 8 RFC822.SIZE 1 BODY[HEADER] {1}", b"x"), b" FLAGS ())"],
    lambda d: [(b"5 (UID 012 RFC822.SIZE 3 BODY[HEADER] {1}", b"x"), b")", *d],  # leading zero
    lambda d: [b"6 (UID 9 RFC822.SIZE 3 BODY[HEADER] NIL)", *d],
    lambda d: [(b"7 (uid 9 RFC822.SIZE 3 BODY[HEADER] {1}", b"x"), b")", *d],
    lambda d: [*d, *d],  # every response twice (imapclient merges them)
    lambda d: [(b"8 (UID 5 UID 6 BODY[HEADER] {1}", b"x"), b")", *d],
]


def expected(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    return {k: dict(v) for k, v in parse_fetch_response(data, True, True).items()}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_the_fast_reader_reads_every_well_formed_reply_as_imapclient_does(data: list[Any]) -> None:
    got = read_reply(data)
    assert got is not None
    assert got == expected(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(replies(min_size=1), st.sampled_from(range(len(ODD))))
def test_other_framing_is_left_to_imapclient(data: list[Any], odd: int) -> None:
    changed = ODD[odd](data)
    assert read_reply(changed) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    replies(),
    st.integers(min_value=0, max_value=40),
    st.binary(min_size=1, max_size=4),
    st.integers(min_value=0, max_value=1),
)
def test_a_changed_frame_is_read_as_imapclient_reads_it_or_left_to_it(
    data: list[Any], at: int, junk: bytes, where: int
) -> None:
    """Bytes spliced into the framing text (never the literal): either the fast reader says
    no, or its answer is imapclient's."""
    if not data:
        return
    k = (at // 2) % len(data) if where else (at % len(data))
    item = data[k]
    if isinstance(item, tuple):
        head = item[0]
        cut = at % (len(head) + 1)
        data[k] = (head[:cut] + junk + head[cut:], item[1])
    else:
        cut = at % (len(item) + 1)
        data[k] = item[:cut] + junk + item[cut:]
    got = read_reply(data)
    if got is None:
        return
    try:
        want = expected(data)
    except Exception:  # imapclient refuses it: the fast reader must not have taken it
        raise AssertionError(f"read {got!r} from a reply imapclient refuses") from None
    assert got == want


def test_a_literal_whose_length_differs_from_its_announcement_is_left_to_imapclient() -> None:
    assert read_reply([(b"1 (UID 5 RFC822.SIZE 3 BODY[HEADER] {4}", b"abc"), b")"]) is None


def test_field_names_in_any_case_are_named_as_imapclient_names_them() -> None:
    # Found by the hypothesis test above: a letter spliced into a field name ("FaROM").
    data = [(b"1 (UID 5 RFC822.SIZE 3 BODY[HEADER.FIELDS (FaROM Reply-To)] {1}", b"x"), b")"]
    assert read_reply(data) == expected(data)
    assert read_reply(data) == {
        5: {b"SEQ": 1, b"RFC822.SIZE": 3, b"BODY[HEADER.FIELDS (FAROM REPLY-TO)]": b"x"}
    }


def test_an_empty_reply_is_empty() -> None:
    assert read_reply([]) == {}
