"""The content filter's wire helpers: reading DATA up to CRLF.CRLF in chunks without reading past
it, dot-unstuffing, the queue ID, XFORWARD values and the XFORWARD lines passed on."""

from __future__ import annotations

import asyncio
import random

import aiosmtpd.smtp
import pytest
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.channels.smtp.relay import _xforward
from guardmail.channels.smtp.wire import (
    _RECEIVED_ID,
    FilterSMTP,
    queue_id,
    read_data,
    unstuff,
    xtext_decode,
)
from guardmail.core.headers import header_fields

NEXT = b"QUIT\r\n"  # a pipelined command after the end of data must stay unread

CASES = [
    (b".\r\n", b""),
    (b"\r\n.\r\n", b"\r\n"),
    (b"a\r\n.\r\n", b"a\r\n"),
    (b"Subject: x\r\n\r\nbody\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n"),
    (b"..leading dot\r\n.\r\n", b"..leading dot\r\n"),
    (b"x\r\n..\r\n...\r\n.\r\n", b"x\r\n..\r\n...\r\n"),
    (b"x\r\n.y\r\n.\r\n", b"x\r\n.y\r\n"),
    (b"a\r\r\n\r\r\n.\r\r\n.\r\n", b"a\r\r\n\r\r\n.\r\r\n"),
    (b"bare\n.\nlf\r\n.\r\n", b"bare\n.\nlf\r\n"),  # only CRLF.CRLF ends the data
    (b"long " + b"y" * 5000 + b"\r\n.\r\n", b"long " + b"y" * 5000 + b"\r\n"),
    (b"\xff\x00\xc3\xa9 8-bit\r\n.\r\n", b"\xff\x00\xc3\xa9 8-bit\r\n"),
]


async def _read(stream: bytes, *, limit: int, piece: int) -> tuple[bytes, bytes]:
    reader = asyncio.StreamReader(limit=limit)

    async def feed() -> None:
        for start in range(0, len(stream), piece):
            reader.feed_data(stream[start : start + piece])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.create_task(feed())
    data = await read_data(reader)
    await feeder
    return data, await reader.read()


@pytest.mark.parametrize(("wire", "expected"), CASES)
@pytest.mark.parametrize("limit", [5, 7, 64, 1 << 20])
@pytest.mark.parametrize("piece", [1, 2, 3, 5, 1000])
def test_data_ends_at_crlf_dot_crlf_and_nothing_after_it_is_read(
    wire: bytes, expected: bytes, limit: int, piece: int
) -> None:
    data, rest = asyncio.run(_read(wire + NEXT, limit=limit, piece=piece))
    assert data == expected
    assert rest == NEXT


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"", b""),
        (b"..\r\n", b".\r\n"),
        (b".x\r\n..y\r\nz.\r\n", b"x\r\n.y\r\nz.\r\n"),
        (b"a\r\n...\r\n", b"a\r\n..\r\n"),
        (b"no dots\r\n", b"no dots\r\n"),
    ],
)
def test_unstuffing_removes_the_first_dot_of_each_line(wire: bytes, message: bytes) -> None:
    assert unstuff(wire) == message


RECEIVED = (
    b"Received: from client.example.org (localhost [127.0.0.1])\r\n"
    b"\tby mx.example (Postfix) with ESMTP id 4AF8C20C335;\r\n"
    b"\tWed, 25 Nov 2026 02:48:00 +0000 (UTC)\r\n"
)
UPSTREAM = b"Received: from far.example by relay.example with ESMTPS id UPSTREAM1;\r\n x\r\n"
BEFORE_QUEUE = (
    b"Received: from c (localhost [127.0.0.1])\r\n\tby mx (Postfix) with ESMTP\r\n\tfor <u@x>\r\n"
)


@pytest.mark.parametrize(
    ("xforward", "raw", "expected"),
    [
        ({"IDENT": "ABC123"}, RECEIVED, "ABC123"),
        ({"IDENT": "[UNAVAILABLE]"}, RECEIVED, "4AF8C20C335"),
        ({}, RECEIVED + UPSTREAM + b"\r\nbody", "4AF8C20C335"),
        ({}, BEFORE_QUEUE + UPSTREAM + b"\r\nbody", None),  # only the topmost header counts
        ({}, b"Subject: none\r\n\r\n" + RECEIVED, None),  # a Received in the body is no header
        ({}, b"", None),
    ],
)
def test_the_queue_id_comes_from_xforward_or_the_topmost_received_header(
    xforward: dict[str, str], raw: bytes, expected: str | None
) -> None:
    assert queue_id(xforward, raw) == expected


def _queue_id_from_every_field(raw: bytes) -> str | None:
    """The queue ID as ``queue_id`` read it before it decoded only the Received fields."""
    received = next((v for n, v in header_fields(raw) if n.lower() == "received"), None)
    found = _RECEIVED_ID.search(received) if received else None
    return found.group(1) if found else None


HOSTILE = [
    RECEIVED,
    b"X-Long: " + b"a" * 100_000 + b"\r\n" + RECEIVED,
    b"RECEIVED: from x\r\n by mx (Postfix) with ESMTP id UPPER1\r\n",
    b"Received : from x\r\n with SMTP id SPACED1\r\n",  # blanks before the colon
    b"X-A: 1\r\n with ESMTP id CONTINUED1\r\n" + RECEIVED,  # another field's continuation
    b": no name\r\n\twith ESMTP id ORPHAN1\r\n" + RECEIVED,  # a junk line, then a fold
    b"Received\x00: with ESMTP id NUL1\r\n" + RECEIVED,
    b"Received: with \xff\xfe ESMTP id \xc3\xa9BAD\r\n\twith ESMTP id LATER1\r\n",
    b"Received: \x00with ESMTP id Z\x00ERO1\r\n",
    b"Received:" + b" with ESMTP id" * 5000 + b" DEEP1\r\n",
    b"\r\n" + RECEIVED,  # an empty header section
    b"From: a\n" + RECEIVED.replace(b"\r\n", b"\n"),  # bare LF
    b"From: a\r\n\r\n" + RECEIVED,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_the_queue_id_is_the_same_as_read_from_every_field(raw: bytes) -> None:
    assert queue_id({}, raw) == _queue_id_from_every_field(raw)


def test_the_queue_id_is_the_same_as_read_from_every_field_on_random_headers() -> None:
    rng = random.Random(27)
    pieces = [
        b"Received:",
        b"received :",
        b"X-A:",
        b" with ESMTP id Q",
        b"\twith LMTP id R2",
        b"\r\n",
        b"\n",
        b"\r",
        b":",
        b" ",
        b"\x00",
        b"\xff",
        b"id",
        b"with",
        b"Q1W2",
    ]
    for _ in range(3000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
        assert queue_id({}, raw) == _queue_id_from_every_field(raw), raw


def test_xtext_values_are_decoded() -> None:
    assert xtext_decode("mail+2Bx.example") == "mail+x.example"
    assert xtext_decode("plain") == "plain"


def test_xforward_is_passed_on_only_for_offered_attributes_within_512_octets() -> None:
    attributes = {"NAME": "mail.example", "ADDR": "192.0.2.7", "IDENT": "ABC", "LOGIN": "x"}
    assert _xforward(attributes, None) == []
    assert _xforward(attributes, "NAME ADDR PROTO HELO IDENT") == [
        "XFORWARD NAME=mail.example ADDR=192.0.2.7 IDENT=ABC"
    ]
    long = {"NAME": "n" * 300, "HELO": "h" * 300}
    lines = _xforward(long, "NAME HELO")
    assert lines == [f"XFORWARD NAME={'n' * 300}", f"XFORWARD HELO={'h' * 300}"]
    assert all(len(line) + 2 <= 512 for line in lines)


# MAIL and RCPT paths: FilterSMTP reads a plain <local@domain> itself, the rest as aiosmtpd does.
PATHS = [
    "<c12@customer.test>",
    "<c12@customer.test> SIZE=3000 BODY=8BITMIME",
    "<a+b=c@d-e.f>  NOTIFY=SUCCESS,FAILURE\tORCPT=rfc822;a@b",
    "<A.B@EXAMPLE.TEST>\tX",
    "<a@b>X",
    "<a@b> ",
    "<a@b>(comment) X",
    "<a@b> (comment)",
    "<>",
    "<> SIZE=1",
    '<"quoted local"@b>',
    "<a.@b>",
    "<a@b.c.>",
    "<a@[192.0.2.1]>",
    "<@relay.test:a@b>",
    "< a@b>",
    "<a@b >",
    "<é@b>",
    "a@b",
    "",
]


def _smtps() -> tuple[SMTP, FilterSMTP]:
    loop = asyncio.new_event_loop()
    loop.close()  # only the parsers are used
    return SMTP(Sink(), loop=loop), FilterSMTP(Sink(), loop=loop)


@pytest.mark.parametrize("arg", PATHS)
def test_a_path_reads_as_aiosmtpd_reads_it(arg: str) -> None:
    theirs, ours = _smtps()
    assert ours._getaddr(arg) == theirs._getaddr(arg)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='ab.@<>()[]:;,"\\ \t+=-é', max_size=30))
def test_any_path_reads_as_aiosmtpd_reads_it(arg: str) -> None:
    theirs, ours = _smtps()
    assert _outcome(ours, arg) == _outcome(theirs, arg)


def _outcome(smtp: SMTP, arg: str) -> object:
    try:
        return smtp._getaddr(arg)
    except Exception as exc:  # aiosmtpd's parser raises IndexError on "<" (its session: 500)
        return type(exc)


def test_a_plain_path_does_not_go_through_the_header_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(value: str) -> None:
        raise AssertionError(f"the email package's parser was asked for {value!r}")

    monkeypatch.setattr(aiosmtpd.smtp, "get_angle_addr", slow)
    _, ours = _smtps()
    assert ours._getaddr("<c12@customer.test> SIZE=3000") == ("c12@customer.test", "SIZE=3000")
    assert ours._getaddr("<a@b>") == ("a@b", "")
    with pytest.raises(AssertionError, match="parser"):
        ours._getaddr('<"q"@b>')  # not plain: aiosmtpd's way
