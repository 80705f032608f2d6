"""The person's own messages and group-chat context: judged by their recipients, archived with an
``action: kept`` entry in the same transaction (so reconcile leaves them alone), never twice."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.core.item import Identity, Item, mail_item, mail_recipients
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.kept import KEPT, OUTGOING, keep_many
from guardmail.pipeline import Pipeline
from guardmail.reconcile import reconcile
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.store import Vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (b"To: a@x.example\r\n", [("To", "a@x.example")]),
        (b"To: A <a@x.example>, b@y.example\r\n", [("To", "a@x.example"), ("To", "b@y.example")]),
        (
            b"cc: c@x.example\r\nBCC: d@x.example\r\n",
            [("Cc", "c@x.example"), ("Bcc", "d@x.example")],
        ),
        (b"From: me@home.example\r\nReply-To: r@x.example\r\n", []),
        (b"To: undisclosed-recipients:;\r\n", []),
        (b'To: "odd" <<broken@x.example>\r\n', [("To", "broken@x.example")]),
    ],
)
def test_recipients_are_read_from_to_cc_and_bcc_only(
    header: bytes, found: list[tuple[str, str]]
) -> None:
    got = mail_recipients(b"From: me@home.example\r\n" + header + b"\r\nbody")
    assert [(i.source, i.address) for i in got if i.address] == found


def test_recipients_of_a_huge_header_are_read_loosely_without_error() -> None:
    raw = b"To: " + b"x" * 200_000 + b" stalker@example.net\r\n\r\n"
    assert any(i.address == "stalker@example.net" for i in mail_recipients(raw))


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    yield Pipeline(vault=Vault(tmp_path / "vault", storage, "t"), rules=RULES, clock=lambda: NOW)
    storage.close()


def sent(raw: bytes, ref: str = "imap:a/Sent;UIDVALIDITY=1/;UID=1") -> Item:
    item = mail_item(raw, tenant="t", account="a", source_ref=ref, received_at=NOW)
    return replace(item, identities=mail_recipients(raw))


def test_a_message_to_an_offender_is_judged_by_its_recipients(pipeline: Pipeline) -> None:
    to_them = sent(b"From: stalker@example.net\r\nTo: friend@x.example\r\n\r\n")
    assert pipeline.judge_recipients(to_them).action is Action.PASS  # the sender is not judged
    to_them = sent(b"From: me@home.example\r\nBcc: Stalker <stalker+a@example.net>\r\n\r\n")
    verdict = pipeline.judge_recipients(to_them)
    assert verdict.offender == "Ex" and verdict.primary is not None
    assert verdict.primary.header == "Bcc"


def test_kept_items_are_archived_with_their_side_and_an_action_reconcile_leaves_alone(
    pipeline: Pipeline,
) -> None:
    raw = b"From: me@home.example\r\nTo: stalker@example.net\r\nSubject: stop\r\n\r\nStop.\r\n"
    item = sent(raw)
    verdict = pipeline.judge_recipients(item)
    first = keep_many(pipeline, [item], [verdict], direction=OUTGOING, extra=[{"x": 1}])
    again = keep_many(pipeline, [item], [verdict], direction=OUTGOING)
    assert again[0].duplicate and again[0].seq == first[0].seq
    rows = pipeline.vault.rows()
    assert [r.kind for r in rows] == ["archived", "action"]  # no second action for the duplicate
    archived, action = (journal.entry(r) for r in rows)
    assert archived["direction"] == OUTGOING and archived["x"] == 1
    assert archived["offender"] == "Ex" and archived["matches"][0]["header"] == "To"
    assert action["action"] == KEPT and action["archived_seq"] == first[0].seq
    assert pipeline.vault.blobs.path(first[0].sha256).read_bytes() == raw
    assert reconcile(pipeline.vault, lambda body: "gone", now=NOW) == []


def test_keeping_nothing_writes_nothing(pipeline: Pipeline) -> None:
    assert keep_many(pipeline, [], [], direction=OUTGOING) == []
    assert pipeline.vault.rows() == []


def test_an_xmpp_recipient_jid_is_judged_as_a_jid(pipeline: Pipeline) -> None:
    item = replace(
        sent(b"x"), identities=(Identity(source="jid", address="Stalker@Example.NET/phone"),)
    )
    assert pipeline.judge_recipients(item).offender == "Ex"
