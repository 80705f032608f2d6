"""Abuse reports (RFC 5965 ARF) carrying the offender's messages exactly as archived."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from guardmail.export.arf import AbuseReport, Original, build_report, original, transfer_encoding
from guardmail.export.evidence import ExportItem

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def item(seq: int, raw: bytes) -> ExportItem:
    return ExportItem(
        index=seq,
        seq=seq,
        sha256=f"{seq:064x}",
        size=len(raw),
        file=f"items/{seq}.eml",
        received_at=datetime(2026, 11, 20 + seq, 9, 0, tzinfo=UTC),
        archived_at="",
        channel="mail",
        account="home",
        source_ref=f"new/{seq}",
        offender="Jo Stalker",
        rule="addresses[0]",
        header="From",
        action="quarantine",
        done="",
        subject="s",
        message_id=f"<m{seq}@stalk.example>",
        date="",
    )


RAWS = [
    b"Return-Path: <jo@stalk.example>\r\nDelivered-To: jane@home.example\r\n"
    b"From: Jo <jo@stalk.example>\r\nTo: jane@home.example\r\nSubject: hi\r\n\r\n"
    b"plain ascii body\r\n",
    # 8-bit, a NUL, LF-only line ends and no final newline: all must survive untouched.
    b"From: jo@stalk.example\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\n\xc3\xbc\x00\xff tail",
    b"From: jo@stalk.example\r\nSubject: third\r\n\r\n" + b"x" * 1200 + b"\r\n",
]


def origs() -> list[Original]:
    return [original(item(n, raw), raw) for n, raw in enumerate(RAWS, start=1)]


def report(**kw: object) -> AbuseReport:
    args: dict[str, object] = {
        "offender": "Jo Stalker",
        "to": "abuse@stalk.example",
        "sender": "jane@home.example",
        "now": NOW,
        "version": "9.9",
    }
    args.update(kw)
    return build_report(origs(), **args)  # type: ignore[arg-type]


def raw_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(headers, payload) of each top-level part, cut at the boundary bytes themselves."""
    m = re.search(rb'boundary="([^"]+)"', data)
    assert m is not None
    delimiter = b"\r\n--" + m.group(1)
    chunks = data.split(delimiter)[1:-1]
    parts = []
    for chunk in chunks:
        head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        parts.append((head, payload))
    return parts


def test_report_parses_as_multipart_report_with_feedback_type_abuse() -> None:
    out = report().data
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "feedback-report"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/feedback-report",
        "message/rfc822",
        "message/rfc822",
        "message/rfc822",
    ]
    fields = email.message_from_bytes(raw_parts(out)[1][1], policy=email.policy.default)
    assert fields["Feedback-Type"] == "abuse"
    assert fields["User-Agent"] == "guardmail/9.9"
    assert fields["Version"] == "1"
    assert fields["Original-Mail-From"] == "<jo@stalk.example>"
    assert fields["Original-Rcpt-To"] == "<jane@home.example>"
    assert fields["Arrival-Date"] == "Sat, 21 Nov 2026 09:00:00 +0000"
    assert fields["Reported-Domain"] == "stalk.example"
    assert fields["Incidents"] == "3"
    assert msg["To"] == "abuse@stalk.example" and msg["From"] == "jane@home.example"
    assert "3 messages" in msg["Subject"]


def test_attached_originals_are_byte_identical_to_the_archived_bytes() -> None:
    out = report().data
    attached = [payload for head, payload in raw_parts(out) if b"message/rfc822" in head]
    assert attached == RAWS
    heads = [head for head, _ in raw_parts(out)][2:]
    assert [re.search(rb"Transfer-Encoding: (\w+)", h).group(1) for h in heads] == [  # type: ignore[union-attr]
        b"7bit",
        b"binary",
        b"binary",
    ]
    assert b"Content-Transfer-Encoding: binary" in out.split(b"\r\n\r\n", 1)[0]


def test_text_part_lists_every_message_with_its_hash() -> None:
    msg = email.message_from_bytes(report(attach=1).data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = next(msg.iter_parts()).get_content()
    assert "3 message(s) arrived between 2026-11-21 09:00 and 2026-11-23 09:00 UTC" in text
    assert f"{3:064x}  on request" in text and f"{1:064x}  attached" in text
    assert [p.get_content_type() for p in msg.iter_parts()][2:] == ["message/rfc822"]


def test_boundary_never_occurs_in_an_original() -> None:
    raw = b"From: jo@stalk.example\r\n\r\n--guardmail-report-0\r\nfake part\r\n"
    o = original(item(1, raw), raw)
    args = {"offender": "Jo", "to": "abuse@x.example", "sender": "me@x.example", "now": NOW}
    with pytest.raises(ValueError, match="occurs in a part"):
        build_report([o], version="1", boundary="guardmail-report-0", **args)  # type: ignore[arg-type]
    out = build_report([o], version="1", **args).data  # type: ignore[arg-type]
    assert [payload for _, payload in raw_parts(out)][2] == raw


def test_hostile_return_path_cannot_inject_a_field() -> None:
    # A folded continuation line that looks like a field: unfolded into the value, then reduced
    # to the one address, so the feedback part keeps exactly one Feedback-Type.
    raw = (
        b"Return-Path: <x@evil.example>\r\n Feedback-Type: not-spam\r\nFrom: x@evil.example\r\n\r\n"
    )
    o = original(item(1, raw), raw)
    assert o.return_path == "x@evil.example" and o.domain == "evil.example"
    out = build_report(
        [o],
        offender="X",
        to="abuse@evil.example",
        sender="me@home.example",
        now=NOW,
        version="1",
    ).data
    feedback = raw_parts(out)[1][1]
    assert feedback.count(b"Feedback-Type:") == 1 and b"not-spam" not in feedback


def test_addresses_must_be_plain() -> None:
    with pytest.raises(ValueError, match="not a plain address"):
        report(to="abuse@stalk.example\r\nBcc: everyone@example.org")


@pytest.mark.parametrize(
    ("raw", "label"),
    [(b"a\r\nb\r\n", "7bit"), ("ü".encode(), "8bit"), (b"a\x00", "binary"), (b"y" * 999, "binary")],
)
def test_transfer_encoding_is_the_narrowest_label_the_bytes_allow(raw: bytes, label: str) -> None:
    assert transfer_encoding(raw) == label
