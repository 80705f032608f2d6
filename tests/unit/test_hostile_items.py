"""No byte sequence a sender controls stops item building: every hostile message of the corpus
becomes an Item with its exact bytes, the offender's copy is judged an offender's and a friend's
is clean, and what could not be read strictly is named in the item's meta."""

from datetime import UTC, datetime

import pytest

from guardmail.core.item import STRICT_LIMIT, mail_item
from guardmail.core.rules import Action, OffenderRule, RuleSet, decide
from tests.hostile.corpus import OFFENDER, Hostile, corpus

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=(OFFENDER,))])
CORPUS = corpus()


def build(raw: bytes) -> tuple[Action, dict[str, str]]:
    item = mail_item(raw, tenant="t", account="a", source_ref="new/1", received_at=NOW)
    assert item.raw is raw
    return decide(item.identities, RULES, now=NOW).action, dict(item.meta)


@pytest.mark.parametrize("message", CORPUS, ids=[m.name for m in CORPUS])
def test_hostile_message_becomes_an_item_judged_by_its_sender(message: Hostile) -> None:
    action, _ = build(message.raw)
    assert action is (Action.QUARANTINE if message.offender else Action.PASS)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            b"From: stalker@example.net\r\nSubject: =?utf-8?b?!!!notbase64?=\r\n\r\nhi",
            "Subject: undecodable encoded-word (HeaderParseError: Base64 decoding error)",
        ),
        (
            b"From: " + b"(" * 1200 + b")" * 1200 + b" stalker@example.net\r\n\r\nhi",
            "From: too deeply nested comments or groups; read loosely",
        ),
        (
            b"Sender: " + b"g:" * 1500 + b"stalker@example.net\r\n\r\nhi",
            "Sender: too deeply nested comments or groups; read loosely",
        ),
        (
            b"From: " + b"x" * STRICT_LIMIT + b" <stalker@example.net>\r\n\r\nhi",
            f"From: too long for the address parser ({STRICT_LIMIT + 22} characters)",
        ),
        (
            b"From: =?x-nope?q?Bob?= <stalker@example.net>\r\n\r\nhi",
            "From: undecodable encoded-word (LookupError: unknown encoding: x-nope)",
        ),
    ],
    ids=["bad-base64-subject", "deep-comments", "deep-groups", "huge-from", "unknown-charset"],
)
def test_unreadable_header_is_read_loosely_and_named_in_meta(raw: bytes, error: str) -> None:
    action, meta = build(raw)
    assert action is Action.QUARANTINE
    assert meta["parse_error"] == error


def test_several_parse_errors_are_kept_together_beside_the_source_meta() -> None:
    raw = b"From: =?x-a?q?A?= <stalker@example.net>\r\nSubject: =?utf-8?b?!!!notbase64?=\r\n\r\n"
    item = mail_item(
        raw, tenant="t", account="a", source_ref="r", received_at=NOW, meta=(("file", "new/1"),)
    )
    assert item.meta == (
        ("file", "new/1"),
        (
            "parse_error",
            "From: undecodable encoded-word (LookupError: unknown encoding: x-a); "
            "Subject: undecodable encoded-word (HeaderParseError: Base64 decoding error)",
        ),
    )


def test_clean_readable_mail_has_no_parse_error() -> None:
    _, meta = build(b"From: Bob <bob@example.org>\r\nSubject: =?utf-8?q?hi?=\r\n\r\n")
    assert "parse_error" not in meta


def test_header_after_a_bare_cr_is_read() -> None:
    action, _ = build(b"Subject: x\rFrom: stalker@example.net\r\rbody")
    assert action is Action.QUARANTINE
