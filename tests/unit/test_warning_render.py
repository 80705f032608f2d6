"""The warning's exact bytes: deterministic, no header injection, RFC 3834 restraint."""

from email import message_from_bytes
from email.policy import default

import pytest

from guardmail.core.warning import (
    UnsafeValue,
    is_no_reply_address,
    render_warning,
    should_not_answer,
)

TEMPLATE = (
    "{{ offender }},\n\nStop contacting me.{% if law %} ({{ law }}){% endif %}\n\n{{ victim }}\n"
)


def render(**over: str) -> bytes:
    values = {"offender": "Ex", "victim": "Jane", "date": "2026-11-25", "law": "§238 StGB"}
    values.update({k: v for k, v in over.items() if k in values})
    return render_warning(
        template=TEMPLATE,
        values=values,
        sender=over.get("sender", "Jane Victim <jane@example.org>"),
        recipient=over.get("recipient", "stalker@example.net"),
        subject=over.get("subject", "Stop contacting me"),
        date="Wed, 25 Nov 2026 12:00:00 +0000",
        message_id="<w1@example.org>",
    ).raw


def test_rendering_is_deterministic_and_parses_back() -> None:
    raw = render()
    assert raw == render()
    msg = message_from_bytes(raw, policy=default)
    assert msg["To"] == "stalker@example.net" and msg["Message-ID"] == "<w1@example.org>"
    assert msg["Auto-Submitted"] == "no"
    assert (
        msg.get_content().replace("\r\n", "\n")
        == "Ex,\n\nStop contacting me. (§238 StGB)\n\nJane\n"
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "over",
    [
        {"offender": "Ex\r\nBcc: everyone@example.org"},
        {"victim": "Jane\nX-Injected: 1"},
        {"subject": "Stop\r\nBcc: x@example.org"},
        {"recipient": "stalker@example.net\r\nBcc: x@example.org"},
        {"law": "a\x00b"},
    ],
    ids=["offender-crlf", "victim-lf", "subject-crlf", "recipient-crlf", "nul"],
)
def test_line_breaks_and_nul_in_any_value_are_refused(over: dict[str, str]) -> None:
    with pytest.raises(UnsafeValue, match="line break or NUL"):
        render(**over)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"From: a@x.example\r\nAuto-Submitted: auto-replied\r\n", "Auto-Submitted: auto-replied"),
        (b"From: a@x.example\r\nList-Id: <l.x.example>\r\n", "mailing list (list-id)"),
        (b"From: a@x.example\r\nPrecedence: bulk\r\n", "Precedence: bulk"),
        (b"From: a@x.example\r\nReturn-Path: <>\r\n", "bounce (empty Return-Path)"),
        (b"From: No Reply <no-reply@x.example>\r\n", "no-reply sender no-reply@x.example"),
        (b"From: a@x.example\r\nAuto-Submitted: no\r\n", None),
        (b"From: stalker@x.example\r\n", None),
    ],
)
def test_auto_submitted_list_bounce_and_no_reply_mail_is_never_answered(
    headers: bytes, reason: str | None
) -> None:
    assert should_not_answer(headers + b"\r\nbody") == reason


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("noreply@x.example", True),
        ("do-not-reply+abc@x.example", True),
        ("MAILER-DAEMON@x.example", True),
        ("stalker@x.example", False),
        ("replyguy@x.example", False),
    ],
)
def test_no_reply_addresses(address: str, expected: bool) -> None:
    assert is_no_reply_address(address) is expected
