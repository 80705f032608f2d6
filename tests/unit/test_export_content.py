"""What the report reads of a message: decoded, rendered to text, bounded on hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardmail.export.content import MAX_NESTED, MAX_TEXT, html_text, mail_content, sent_time
from guardmail.export.details import describe, message_text
from tests.unit.report_case import FIRST, LOOKALIKE, SAM_CHAT, WARNING


def test_subject_and_names_are_decoded_and_date_is_converted_to_utc() -> None:
    c = mail_content(FIRST)
    assert c.subject == "Ich weiß wo du wohnst"
    assert c.sender == "Säm Stälker <stalker@example.net>"
    assert c.sent == datetime(2026, 11, 1, 21, 15, tzinfo=UTC)
    assert c.date_header == "Sun, 01 Nov 2026 22:15:00 +0100"


def test_plain_text_is_decoded_and_the_attachment_listed_with_its_hash() -> None:
    c = mail_content(FIRST)
    assert (
        c.text == "I know where you live. I saw your car on Mühlenweg."
    )  # the HTML twin not twice
    a, broken = c.attachments
    assert (a.name, a.content_type, a.size) == ("car.png", "image/png", 172)
    assert (broken.name, broken.size) == ("broken.png", 60)
    assert len(a.sha256) == 64
    assert a.thumbnail == broken.thumbnail == b""  # no thumbnails without a budget


def test_html_is_rendered_to_text_and_scripts_are_dropped() -> None:
    c = mail_content(LOOKALIKE)
    assert "New address, same me." in c.text and "Answer me." in c.text
    assert "alert" not in c.text and "<" not in c.text
    assert html_text('<p>see <a href="http://x.example/">this</a></p>') == (
        "see this <http://x.example/>"
    )


def test_no_bodies_reads_who_and_when_but_no_text() -> None:
    c = mail_content(FIRST, bodies=False)
    assert c.subject and c.sent and not c.text and not c.attachments
    d = describe(SAM_CHAT, channel="xmpp", subject="", bodies=False)
    assert d.content.sender == "sam@chat.example/phone" and d.content.text == ""


def test_warning_text_has_plain_line_ends_no_carriage_returns() -> None:
    text = message_text(WARNING)
    assert "\r" not in text
    assert text == "Do not contact me again.\nAny further message goes to the police."


HEAD = b"From: x@y.example\r\nSubject: s\r\n"


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        (
            HEAD
            + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
            + b"".join(
                b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
                for i in range(1, 3000)
            ),
            f"more than {MAX_NESTED} MIME parts",
        ),
        (HEAD + b"Content-Type: text/plain\r\n\r\n" + b"A" * (17 * 1024 * 1024), "too large"),
        (HEAD + b"Content-Type: text/plain\r\n\r\n" + b"word " * 10_000, "more characters"),
        # email.message._parseparam is quadratic: 80,000 parameters took 3.75 s, 3 million
        # would stall an export for hours.
        (HEAD + b"Content-Type: text/plain" + b"; a=b" * 3_000_000 + b"\r\n\r\nx", "bytes long"),
        (
            HEAD
            + b"Content-Type: multipart/mixed; boundary=X"
            + b";\r\n a=b" * 100_000
            + b"\r\n\r\n",
            "bytes long",
        ),
    ],
    ids=["deep-mime", "huge", "long-text", "many-parameters", "folded-parameters"],
)
def test_hostile_structure_is_read_within_bounds_and_said(raw: bytes, note: str) -> None:
    c = mail_content(raw)
    assert any(note in n for n in c.notes), c.notes
    assert len(c.text) <= MAX_TEXT


@pytest.mark.parametrize(
    "raw",
    [
        HEAD + b"Content-Type: text/plain; charset=x-no-such\r\n\r\nhello \xff\r\n",
        HEAD + b"Content-Type: text/plain; charset=zlib_codec\r\n\r\nhello\r\n",
        HEAD + b'Content-Type: text/plain; charset="\r\n\r\nhello\r\n',
        HEAD + b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64===\r\n",
        HEAD + b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        HEAD + b"Content-Type: text/html\r\n\r\n<p><<<</scr<script>ipt>&#xffffffff;&bogus;<a href=",
        b"\x00\xff no headers at all",
        HEAD + b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n\r\nx",
    ],
)
def test_bad_charsets_encodings_and_markup_never_raise(raw: bytes) -> None:
    c = mail_content(raw)
    assert isinstance(c.text, str)


def test_unreadable_dates_are_none() -> None:
    assert sent_time("yesterday") is None
    assert sent_time("Mon, 02 Nov 2026 08:00:00") == datetime(2026, 11, 2, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "unit", ["<a ", "<!--", "</", "<a href='", "<script>", "&#", "<a href=x>y"]
)
def test_html_that_takes_the_stdlib_parser_quadratic_time_is_read_in_one_pass(unit: str) -> None:
    # html.parser took 20 s for 32 KB of "<a " (minutes for the 256 KB read here); the
    # scanner is linear, so each of these finishes at once: a regression shows as a hang.
    from guardmail.export.content import MAX_HTML

    text = html_text(unit * (MAX_HTML // len(unit)))
    assert "<a" not in text and "<!--" not in text
