"""The bundle's abuse/ folder: a report per offender and provider that an abuse desk can act on."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.export.abuse_files import AbuseReports, provider
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria, ExportItem
from guardmail.export.selection import select
from tests.unit.report_case import FIRST, LAST, LOOKALIKE, NOW, OTHER_MARKS, SAM, make_report_case


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    case = make_report_case(tmp_path_factory.mktemp("abuse"))
    evidence = select(case.vault.rows(), tenant="jane", criteria=Criteria(offenders=(SAM,)))
    out = case.root / "sam"
    write_bundle(case.vault, evidence, out, now=NOW, version="9.9")
    yield out
    case.storage.close()


def test_one_report_per_offender_and_provider_listed_in_manifest_and_checksums(
    bundle: Path,
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {(r["file"], r["to"], r["items"], r["form"]) for r in manifest["abuse_reports"]}
    assert listed == {
        ("abuse/sam-stalker-example.net.txt", "abuse@example.net", 3, "text"),
        ("abuse/sam-stalker-example.net.eml", "abuse@example.net", 3, "arf"),
        ("abuse/sam-stalker-chat.example.txt", "abuse@chat.example", 1, "text"),
    }
    sums: dict[str, str] = {}
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    for r in manifest["abuse_reports"]:
        data = (bundle / r["file"]).read_bytes()
        assert sums[r["file"]] == r["sha256"] == hashlib.sha256(data).hexdigest()


def test_text_report_carries_every_items_full_headers_times_and_hash(bundle: Path) -> None:
    text = (bundle / "abuse" / "sam-stalker-example.net.txt").read_text()
    assert text.startswith("To: abuse@example.net\nSubject: Abuse report: harassment from")
    assert "keeps writing to jane@home.example against their will" in text
    for raw in (FIRST, LOOKALIKE, LAST):
        assert hashlib.sha256(raw).hexdigest() in text
    assert "    Subject: =?utf-8?q?Ich_wei=C3=9F_wo_du_wohnst?=" in text  # as received
    assert "Date:           Sun, 01 Nov 2026 22:15:00 +0100  (2026-11-01 21:15:00 UTC)" in text
    assert "Received (UTC): 2026-11-02 09:30:00" in text
    assert "Message-ID:     <s1@example.net>" in text
    assert "\r" not in text


def test_eml_is_an_arf_report_with_the_messages_attached_unaltered(bundle: Path) -> None:
    data = (bundle / "abuse" / "sam-stalker-example.net.eml").read_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["To"] == "abuse@example.net" and msg["From"] == "jane@home.example"
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
    assert b"Feedback-Type: abuse" in data and b"Reported-Domain: example.net" in data
    for raw in (FIRST, LOOKALIKE, LAST):
        assert raw in data  # byte for byte


def test_chat_report_goes_to_the_jids_server_and_names_xep_0157(bundle: Path) -> None:
    text = (bundle / "abuse" / "sam-stalker-chat.example.txt").read_text()
    assert "To: abuse@chat.example" in text and "1 instant message arrived" in text
    assert "keeps writing to jane@home.example" in text and "XEP-0157" in text
    assert "Why don't you answer?" in text  # the stanza is what an XMPP desk reads


def test_no_other_offender_in_any_abuse_file(bundle: Path) -> None:
    for f in (bundle / "abuse").iterdir():
        data = f.read_text(errors="replace")
        for mark in OTHER_MARKS:
            assert mark not in data, (f.name, mark)


def _item(seq: int, channel: str = "mail") -> ExportItem:
    return ExportItem(
        index=seq,
        seq=seq,
        sha256=f"{seq:064x}",
        size=10,
        file=f"items/{seq}.eml",
        received_at=datetime(2026, 11, 1, tzinfo=UTC),
        archived_at="",
        channel=channel,
        account="a",
        source_ref="r",
        offender="Jo",
        rule="r",
        header="From",
        action="quarantine",
        done="",
        subject="",
        message_id="",
        date="",
    )


def test_provider_is_the_from_domain_else_the_first_hops_host() -> None:
    assert provider(b"From: x <jo@Mail.Example.ORG>\r\n\r\n", "mail") == "mail.example.org"
    first_hop = (
        b"Received: from relay by mx.home.example; Mon, 2 Nov 2026 10:00:00 +0000\r\n"
        b"Received: from [10.0.0.1] by smtp.sender-isp.example; Mon, 2 Nov 2026\r\n"
        b"From: undisclosed\r\n\r\n"
    )
    assert provider(first_hop, "mail") == "sender-isp.example"
    assert provider(b"Subject: none\r\n\r\n", "mail") == ""
    stanza = b"<message from='jo@jabber.example/x' to='me@home.example'><body>hi</body></message>"
    assert provider(stanza, "xmpp") == "jabber.example"


def test_hostile_headers_cannot_add_lines_or_control_characters() -> None:
    raw = (
        b"From: jo@evil.example\r\nSubject: hi\x1b[2J\x07 there\r\n"
        b"X-Long: " + b"a" * 40_000 + b"\r\n\r\nbody"
    )
    reports = AbuseReports()
    reports.add(_item(1), raw)
    [text_file] = reports.files(
        read=lambda i: raw, now=datetime(2026, 11, 25, tzinfo=UTC), version="9.9"
    )
    text = text_file.data.decode()
    assert "\x1b" not in text and "\x07" not in text
    assert "    Subject: hi[2J there" in text
    assert "header block cut at 32,768 bytes" in text
    assert len(text) < 40_000
    assert text_file.to == "abuse@evil.example"  # no recipient address: no .eml, text only


def test_a_large_group_lists_the_first_items_headers_and_the_rest_by_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardmail.export import abuse_files

    monkeypatch.setattr(abuse_files, "MAX_LISTED", 2)
    reports = AbuseReports()
    for n in range(1, 5):
        reports.add(_item(n), f"From: jo@evil.example\r\nX-N: item{n}\r\n\r\n".encode())
    [text_file] = reports.files(
        read=lambda i: b"", now=datetime(2026, 11, 25, tzinfo=UTC), version="9"
    )
    text = text_file.data.decode()
    assert "X-N: item2" in text and "X-N: item3" not in text
    assert f"{4:064x}" in text and text.count("full headers on request") == 2
