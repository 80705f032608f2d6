"""Reading sender identities from raw mail: every header that names a sender, never a crash."""

import random
import re
from datetime import UTC, datetime
from email.utils import getaddresses

import pytest

from guardmail.core.headers import HEADER_SCAN_LIMIT, header_fields, header_section
from guardmail.core.item import (
    Channel,
    Identity,
    describe_source,
    mail_identities,
    mail_item,
    mail_summary,
    simple_address,
)


def ids(raw: bytes, **kw: str) -> list[tuple[str, str | None, str | None]]:
    return [(i.source, i.address, i.display_name) for i in mail_identities(raw, **kw)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@example.net\r\n\r\nbody", [("From", "a@example.net", None)]),
        (
            b"From: Bob <bob@example.net>, carol@example.org\r\n\r\n",
            [("From", "bob@example.net", "Bob"), ("From", "carol@example.org", None)],
        ),
        (
            b"Sender: s@x.example\nReply-To: r@y.example\nReturn-Path: <p@z.example>\n"
            b"Resent-From: q@w.example\n\n",
            [
                ("Sender", "s@x.example", None),
                ("Reply-To", "r@y.example", None),
                ("Return-Path", "p@z.example", None),
                ("Resent-From", "q@w.example", None),
            ],
        ),
        (
            b"From: =?utf-8?q?St=C3=A4lker_Joe?= <j@example.net>\n\n",
            [("From", "j@example.net", "Stälker Joe")],
        ),
        (
            b"from: folded\r\n name <f@example.net>\r\n\r\n",
            [("From", "f@example.net", "folded name")],
        ),
        (b"Subject: no sender at all\r\n\r\nhi", []),
        (b'From: "Bob" <bob@\xc3\xa9xample.net>\n\n', [("From", "bob@éxample.net", "Bob")]),
        (b"From: nul\x00 <n@example.net>\n\n", [("From", "n@example.net", "nul")]),
        (b"From: <weird@@example.net>\n\n", [("From", "weird@@example.net", None)]),
        (
            b"From: broken <<x@example.net\n\n",
            [("From", None, "broken"), ("From", "x@example.net", None)],
        ),
    ],
    ids=[
        "plain",
        "two-from-addresses",
        "every-identity-header",
        "rfc2047-display-name",
        "folded-header-lowercase-name",
        "no-from",
        "8bit-utf8-domain",
        "nul-in-header",
        "double-at",
        "broken-angle-brackets",
    ],
)
def test_identities_are_read_from_every_sender_header(
    raw: bytes, expected: list[tuple[str, str | None, str | None]]
) -> None:
    assert ids(raw) == expected


def test_envelope_sender_is_an_identity_too() -> None:
    assert ids(b"From: a@b.example\n\n", envelope_sender="env@c.example") == [
        ("From", "a@b.example", None),
        ("envelope", "env@c.example", None),
    ]


def test_headers_in_the_body_are_not_identities() -> None:
    raw = b"From: a@b.example\r\n\r\nFrom: hidden@c.example\r\n"
    assert ids(raw) == [("From", "a@b.example", None)]


def test_only_the_header_section_is_scanned_in_a_huge_message() -> None:
    raw = b"From: a@b.example\r\n\r\n" + b"x" * (50 * 1024 * 1024)
    assert ids(raw) == [("From", "a@b.example", None)]


def test_message_without_blank_line_is_all_headers_up_to_the_limit() -> None:
    raw = b"From: a@b.example\r\n" + b"X-Pad: y\r\n" * (HEADER_SCAN_LIMIT // 8)
    assert ("From", "a@b.example", None) in ids(raw)


def test_garbage_lines_are_skipped_not_fatal() -> None:
    raw = b"\xff\xfe garbage\r\n: no name\r\nFrom: a@b.example\r\n\r\n"
    assert header_fields(raw) == [("From", "a@b.example")]


def test_summary_decodes_subject_and_keeps_message_id() -> None:
    raw = b"Subject: =?utf-8?b?w5xiZXI=?= you\r\nMessage-ID: <m1@x>\r\nDate: today\r\n\r\n"
    s = mail_summary(raw)
    assert (s.subject, s.message_id, s.date) == ("Über you", "<m1@x>", "today")


def test_mail_item_keeps_the_raw_bytes() -> None:
    raw = b"From: a@b.example\n\n\x00\xff binary"
    item = mail_item(
        raw, tenant="t", account="a", source_ref="new/1", received_at=datetime.now(UTC)
    )
    assert item.raw is raw
    assert item.channel is Channel.MAIL
    assert item.identities == (Identity(source="From", address="a@b.example"),)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"From: =?utf-8?b?c3RhbGtlckBldmlsLmV4YW1wbGU=?=\n\n",
            [("From (encoded word)", "stalker@evil.example", None)],
        ),
        (
            b'From: "stalker@evil.example" <x@y.example>\n\n',
            [
                ("From", "x@y.example", "stalker@evil.example"),
                ("From (display name)", "stalker@evil.example", None),
            ],
        ),
        (
            b'Reply-To: "a@evil.example, b@worse.example" <x@y.example>\n\n',
            [
                ("Reply-To", "x@y.example", "a@evil.example, b@worse.example"),
                ("Reply-To (display name)", "a@evil.example", None),
                ("Reply-To (display name)", "b@worse.example", None),
            ],
        ),
        (
            b"From: =?utf-8?b?c3TQsGxrZXJAZXZpbC5leGFtcGxl?= <x@y.example>\n\n",
            [
                ("From", "x@y.example", "st\u0430lker@evil.example"),
                ("From (display name)", "st\u0430lker@evil.example", None),
            ],
        ),
        (
            # Mailsploit (2017): encoded-words and a NUL in the local part; clients show the
            # address before the NUL.
            b"From: =?utf-8?b?cG90dXNAd2hpdGVob3VzZS5nb3Y=?==?utf-8?Q?=00?=@mailsploit.example\n\n",
            [
                (
                    "From",
                    "=?utf-8?b?cG90dXNAd2hpdGVob3VzZS5nb3Y=?==?utf-8?Q?=00?=@mailsploit.example",
                    None,
                ),
                ("From (encoded word)", "potus@whitehouse.gov", None),
            ],
        ),
        (
            b"From: Support Team <help@shop.example>\n\n",
            [("From", "help@shop.example", "Support Team")],
        ),
        (
            b'From: "Bob@Example.net" <bob@example.net>\n\n',
            [("From", "bob@example.net", "Bob@Example.net")],
        ),
        (
            b"From: =?utf-8?q?Support_Team?= <help@shop.example>\n\n",
            [("From", "help@shop.example", "Support Team")],
        ),
    ],
    ids=[
        "encoded-word-address",
        "address-shaped-display-name",
        "two-addresses-in-a-display-name",
        "encoded-cyrillic-lookalike",
        "mailsploit-nul",
        "clean-display-name",
        "display-name-is-the-address",
        "clean-encoded-display-name",
    ],
)
def test_addresses_shown_in_display_names_and_encoded_words_are_identities(
    raw: bytes, expected: list[tuple[str, str | None, str | None]]
) -> None:
    assert ids(raw) == expected


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("From (display name)", "an address in the display name of From"),
        ("Reply-To (encoded word)", "an address in an encoded word of Reply-To"),
        ("From", "From"),
        ("envelope", "envelope"),
        ("X (unknown)", "X (unknown)"),
    ],
)
def test_identity_source_is_described_in_words(source: str, words: str) -> None:
    assert describe_source(source) == words


# Pieces of addresses: mostly atoms, with the characters that make the stdlib read otherwise.
ATOMS = ["a", "Bo", "x9", "o'neil", "=?utf-8?q?x?=", "+", "-", "example", "org", "_"]
ODD = [".", "..", "@", " ", "<", ">", '"', ",", "(", ")", ":", ";", "[", "]", "\\", "é", "\t"]


def _random_address(rng: random.Random) -> str:
    def part(n: int) -> str:
        pool = ATOMS if rng.random() < 0.8 else ATOMS + ODD
        return "".join(rng.choice(pool) for _ in range(rng.randrange(1, n)))

    def dotted() -> str:
        return ".".join(part(3) for _ in range(rng.randrange(1, 3)))

    addr = f"{dotted()}@{dotted()}"
    name = rng.choice([" ", "  ", ". "]).join(part(3) for _ in range(rng.randrange(1, 4)))
    space = rng.choice(["", " ", "  "])
    return rng.choice([f"{name}{space}<{addr}>", f"<{addr}>", addr, f"{name}{space}{addr}"])


def test_the_simple_address_form_reads_as_the_stdlib_parser_reads_it() -> None:
    rng = random.Random(28)
    cases = ["Person 5 <person1@site5.example>", "<a@b>", "a.b@c.d", "Jo<j@x>", "a b c <d.e@f>"]
    cases += [_random_address(rng) for _ in range(10_000)]
    simple = 0
    for value in cases:
        got = simple_address(value)
        if got is None:
            continue
        simple += 1
        assert [got] == [(n, a) for n, a in getaddresses([value]) if n or a], value
    # Both sides of the fast path are reached often (a regex that took nothing would pass).
    assert 1_000 < simple < len(cases) - 1_000


# header_fields as it read a header section before it was written by hand (one regex a line):
# the reference the hand-written reader is held to.
_REF_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$", re.DOTALL)
_REF_SPLIT = re.compile(rb"(?:\r\n|\r(?!\n)|\n)")
_REF_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


def _reference_header_section(raw: bytes) -> bytes:
    window = raw[:HEADER_SCAN_LIMIT]
    end = _REF_END.search(window)
    return window[: end.start()] if end else window


def _reference_header_fields(raw: bytes) -> list[tuple[str, str]]:
    fields: list[tuple[bytes, bytearray]] = []
    for line in _REF_SPLIT.split(_reference_header_section(raw)):
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].extend(line)
            continue
        m = _REF_FIELD.match(line)
        if m:
            fields.append((m.group(1), bytearray(m.group(2))))
    return [
        (
            name.decode("ascii", "replace"),
            bytes(value).replace(b"\x00", b"").decode("utf-8", "replace").strip(),
        )
        for name, value in fields
    ]


_PIECES = [
    b"From",
    b"Reply-To",
    b"X-\xff",
    b":",
    b" :",
    b"\t",
    b" ",
    b"\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b"a@b.example",
    b"\xc3\xa9",
    b"\xe2\x80",
    b"\x7f",
    b"=?utf-8?q?x?=",
    b"Fr om",
    b"::",
]


_ONLY = frozenset({b"from"})


def test_header_fields_reads_as_the_one_regex_a_line_reading_did() -> None:
    """And the header section is the one the line-end regexes found."""
    rng = random.Random(2828)
    cases = [b"From: a@b\r\n  more\r\njunk\r\n\tcont\r\nTo :x\r\n\r\nbody", b"", b":", b"A:"]
    # An empty line made of other line ends before the first CRLF CRLF.
    cases += [b"A: x\r\r\n\r\nB: y", b"A: x\n\r\n\r\nB: y", b"A: x\r\n\r\r\n\r\nB: y"]
    cases += [b"A: x\r\nB: y\n\nC: z\r\n\r\n", b"A: x\r\n\r\n", b"\r\n\r\nA: x"]
    for _ in range(20_000):
        if rng.random() < 0.2:
            cases.append(rng.randbytes(rng.randrange(0, 80)))
        else:
            cases.append(b"".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 30))))
    fields = 0
    only = 0
    crlf_only = 0
    for raw in cases:
        got = header_fields(raw)
        assert got == _reference_header_fields(raw), raw
        # ``only``: the same fields, the others left out (their continuations with them).
        assert header_fields(raw, _ONLY) == [f for f in got if f[0].lower().encode() in _ONLY]
        only += len(header_fields(raw, _ONLY))
        assert header_section(raw) == _reference_header_section(raw), raw
        crlf_only += b"\r\n\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
        fields += len(got)
    assert fields > 1_000  # the random sections hold fields, not only junk
    assert 100 < only < fields  # and ``only`` kept some of them, not all
    assert crlf_only > 100  # and the CRLF-only fast path is taken
