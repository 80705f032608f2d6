"""The body signal of the alias linker: contacts in the text, learned from signatures only.
Table-driven, hits and near misses, no mocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.alias_body import (
    MAX_CONTACTS,
    _split,
    body_text,
    contacts,
    signature,
)
from guardmail.core.alias_features import Features, extract, from_dict
from guardmail.core.alias_weights import DEFAULT_THRESHOLD, W_BODY_ADDRESS, W_BODY_CONTACT
from guardmail.core.aliases import AliasIndex
from guardmail.core.item import mail_identities
from tests.hostile.corpus import corpus as hostile_corpus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def mail(body: str, *headers: str) -> bytes:
    if not any(h.startswith("From:") for h in headers):
        headers = ("From: Pat Roe <pat.roe@other.example>", *headers)
    head = "\r\n".join(headers)
    return (head + "\r\nSubject: x\r\n\r\n" + body).encode()


def features(raw: bytes) -> Features:
    return extract(raw, mail_identities(raw))


# The offender's earlier mail: the person's number in the text, the offender's in the signature.
OFFENDER = mail(
    "I know your number is +44 7700 900123.\r\n"
    "Write to me.\r\n-- \r\nMark\r\n"
    "mobile 0151 2345 6789 / @dark_wolf77\r\nmd2@mailbox.example\r\n",
    "From: Mark Dalton <mark.dalton@dalton-family.example>",
)


def index() -> AliasIndex:
    return AliasIndex.build(
        [("Mark", ["mark.dalton@dalton-family.example"], ["Mark Dalton"])],
        [("Mark", features(OFFENDER), NOW - timedelta(days=2))],
    )


def best(raw: bytes) -> tuple[float, tuple[str, ...]]:
    found = index().score(features(raw), now=NOW)
    if not found:
        return 0.0, ()
    return found[0].likelihood, tuple(s.signal for s in found[0].signals)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +49 151 2345 6789", ("tel:123456789",)),
        ("call 0151/23456789", ("tel:123456789",)),  # the same number, written nationally
        ("(030) 1234-5678 9", ("tel:123456789",)),  # the last 9 digits
        ("ping @night_owl on there", ("at:night_owl",)),
        ("write x.y@example.org", ("mail:x.y@example.org",)),
        ("on 2002-08-22 at 10:30:45", ()),  # a date and a time: 8 digits at most
        ("from 192.168.100.200", ()),  # an IP address
        ("12/08/2002", ()),
        ("> quoted +49 151 2345 6789", ()),  # a quoted line is someone else's text
        ("mail me at me@night_owl.example", ("mail:me@night_owl.example",)),  # no handle
        ("write k_v_g2002 @yahoo.fr", ()),  # an address cut at a space, not a handle
        ("v1.2.3.4567890", ()),
    ],
)
def test_contacts(text: str, expected: tuple[str, ...]) -> None:
    assert contacts(text) == expected


def test_contacts_are_bounded() -> None:
    text = " ".join(f"@handle{i:03}" for i in range(100))
    assert len(contacts(text)) == MAX_CONTACTS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("body\n-- \nMark\n+49 151 2345 6789\n", "Mark\n+49 151 2345 6789"),
        ("a\nb\nc\nd\ne\nf\ng\nh\n", "c\nd\ne\nf\ng\nh"),  # no delimiter: the last lines
        ("text\n-- \nold sig\n> quoted\n-- \nnew sig\n", "new sig"),
    ],
)
def test_signature(text: str, expected: str) -> None:
    assert signature(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (mail("plain text\r\n"), "plain text"),
        (
            mail(
                "caf=C3=A9 =\r\nbar\r\n",
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
            ),
            "café bar",
        ),
        (
            mail("aGVsbG8gd29ybGQ=\r\n", "Content-Transfer-Encoding: base64"),
            "hello world",
        ),
        (
            mail(
                "--A\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
                "--A\r\nContent-Type: multipart/alternative; boundary=B\r\n\r\n"
                "--B\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nnested\xe9\r\n--B--\r\n"
                "--A--\r\n",
                'Content-Type: multipart/mixed; boundary="A"',
            ),
            "nested",
        ),
        (mail("<p>only html</p>", "Content-Type: text/html"), ""),
        (mail("x", "Content-Type: multipart/mixed"), ""),  # no boundary
        (mail("x", "Content-Transfer-Encoding: base64"), ""),  # undecodable: no text
    ],
)
def test_body_text(raw: bytes, expected: str) -> None:
    assert body_text(raw).strip().startswith(expected)


def test_a_hostile_body_is_bounded() -> None:
    nested = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(200)
    )
    raw = mail(nested + "text\r\n", 'Content-Type: multipart/mixed; boundary="b0"')
    assert body_text(raw) == ""
    assert len(body_text(mail("x" * 10_000_000))) <= 8 * 1024


def test_the_offender_is_learned_by_signature_only() -> None:
    f = features(OFFENDER)
    # The signature's address is not learned: last lines name the person answered as often.
    assert set(f.signature_contacts) == {"tel:123456789", "at:dark_wolf77"}
    assert "tel:700900123" in f.contacts  # the person's number is in the text ...
    assert from_dict(f.as_dict()) == f
    # ... and is no sign of the offender when a friend gives it.
    assert best(mail("Your number is +44 7700 900123, right?")) == (0.0, ())


def test_list_mail_teaches_no_contact() -> None:
    raw = mail("hi\r\n-- \r\nlist footer 0800 123 456 789\r\n", "List-Id: <l.example>")
    assert features(raw).signature_contacts == ()


HITS = [
    (
        "the offender's phone and first name",
        mail("call me: +49 151 2345 6789", "From: Mark <n1@x.example>"),
    ),
    (
        "the offender's handle and first name, in a signature",
        mail("hello\r\n-- \r\n@dark_wolf77\r\n", "From: Mark <n2@x.example>"),
    ),
]
MISSES = [
    ("the phone alone (a colleague's switchboard)", mail("call +49 151 2345 6789")),
    ("the handle alone", mail("follow @dark_wolf77")),
    (
        "the signature's address (not learned)",
        mail("md2@mailbox.example", "From: Mark <n3@x.example>"),
    ),
    (
        "the person's address in an attribution line",
        mail("On Monday, pat.roe@other.example wrote:\r\nhi", "From: Mark <n7@x.example>"),
    ),
    ("a friend naming the offender's address", mail("beware of mark.dalton@dalton-family.example")),
    ("the phone in a quoted line", mail("> +49 151 2345 6789", "From: Mark <n4@x.example>")),
    ("a handle one letter apart", mail("@dark_wolf78", "From: Mark <n5@x.example>")),
    ("the same last 8 digits only", mail("+49 151 2345 6780", "From: Mark <n6@x.example>")),
]


@pytest.mark.parametrize(("what", "raw"), HITS, ids=[w for w, _ in HITS])
def test_body_contact_hits(what: str, raw: bytes) -> None:
    likelihood, signals = best(raw)
    assert likelihood >= DEFAULT_THRESHOLD, what
    assert "body_contact" in signals


@pytest.mark.parametrize(("what", "raw"), MISSES, ids=[w for w, _ in MISSES])
def test_body_contact_near_misses(what: str, raw: bytes) -> None:
    likelihood, _ = best(raw)
    assert likelihood < DEFAULT_THRESHOLD, what


def test_weights() -> None:
    assert best(mail("call +49 151 2345 6789"))[1] == ("body_contact",)
    assert best(mail("write mark.dalton@dalton-family.example"))[1] == ("body_address",)
    assert W_BODY_ADDRESS < W_BODY_CONTACT


@pytest.mark.parametrize(
    "body",
    [
        "@" * 1_000_000,
        "a@" * 500_000,
        "1 " * 500_000,
        "+(" * 500_000,
        "-- \n" * 300_000,
        "x" * 63 + "@" + "y." * 400_000,
    ],
    ids=["ats", "address-like", "digits", "phone-prefixes", "delimiters", "long-domain"],
)
def test_hostile_texts_stay_bounded(body: str) -> None:
    f = features(mail(body))
    assert len(f.contacts) <= MAX_CONTACTS and len(f.signature_contacts) <= MAX_CONTACTS
    assert all(len(c) <= 80 for c in (*f.contacts, *f.signature_contacts))


def test_the_hostile_corpus_never_raises() -> None:
    for item in hostile_corpus():
        f = features(item.raw)
        assert len(f.contacts) <= MAX_CONTACTS


def test_a_decision_leaves_out_only_the_signature_contacts() -> None:
    # extract(learn=False) is what a decision scores with: every feature the same but the
    # signature's contacts (the index learns those, never compares them).
    for raw in (OFFENDER, *(item.raw for item in hostile_corpus())):
        ids = mail_identities(raw)
        full, decision = extract(raw, ids), extract(raw, ids, learn=False)
        assert decision.signature_contacts == ()
        assert replace(full, signature_contacts=()) == decision
    assert features(OFFENDER).signature_contacts  # and a learned item keeps them


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a +44 7700 900123\nb", ("tel:700900123",)),
        ("> a +44 7700 900123\nb", ()),
        ("  >a +44 7700 900123\nb +49 151 2345 6789", ("tel:123456789",)),
        ("a > b +44 7700 900123", ("tel:700900123",)),  # a ">" inside a line quotes nothing
    ],
)
def test_quoted_lines_are_skipped_with_or_without_a_quote_mark(
    text: str, expected: tuple[str, ...]
) -> None:
    assert contacts(text) == expected


def _split_reference(part: bytes) -> tuple[bytes, bytes]:
    """``_split`` as first written: both separators searched through the whole limit."""
    found = [
        (i, i + len(sep))
        for sep in (b"\n\n", b"\n\r\n")
        if (i := part.find(sep, 0, 16 * 1024)) >= 0
    ]
    if not found:
        return part, b""
    start, end = min(found)
    return part[:start], part[end:]


@settings(max_examples=500, deadline=None)
@given(
    pad=st.sampled_from([0, 16 * 1024 - 8, 16 * 1024 - 3, 16 * 1024 - 1, 16 * 1024]),
    tail=st.lists(st.sampled_from([b"\n", b"\r", b"a", b"\r\n", b"\n\r\n"]), max_size=12),
)
def test_split_finds_the_first_empty_line_as_before(pad: int, tail: list[bytes]) -> None:
    part = b"a" * pad + b"".join(tail)
    assert _split(part) == _split_reference(part)
