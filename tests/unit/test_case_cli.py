"""guardmail case note / list / show: the person's own case journal, kept as evidence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.vault.journal import check_chain
from tests.unit.test_export import Case, make_case


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    c = make_case(tmp_path)
    yield c
    c.storage.close()


def gm(case: Case, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(case.config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_note_with_a_file_is_journaled_listed_and_shown(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = case.root / "letter.pdf"
    letter.write_bytes(b"%PDF-1.4 the police letter")
    text = "Called Springfield police, report 2026-1234, Officer Diaz"
    code, out, err = gm(case, capsys, "case", "note", text, "--attach", str(letter))
    assert (code, err) == (0, ""), err
    seq = int(out.split("entry ")[1].split()[0])
    digest = hashlib.sha256(letter.read_bytes()).hexdigest()
    assert f"kept letter.pdf (26 bytes, SHA-256 {digest})" in out
    assert case.vault.blobs.get(digest) == letter.read_bytes()
    assert check_chain(case.vault.rows()) == []

    code, out, _ = gm(case, capsys, "case", "list")
    assert code == 0 and f"{seq:>6}  " in out and "Officer Diaz  [1 file]" in out
    code, out, _ = gm(case, capsys, "case", "show", str(seq))
    assert code == 0 and text in out and digest in out
    code, out, _ = gm(case, capsys, "evidence", "list", "--json", "--kind", "note")
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert listed["seq"] == seq and listed["subject"].startswith("Called Springfield")


def test_note_refuses_an_unknown_offender_a_missing_file_and_empty_text(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(case.vault.rows())
    code, _, err = gm(case, capsys, "case", "note", "x", "--offender", "nobody")
    assert code == 2 and "unknown offender 'nobody'" in err
    code, _, err = gm(case, capsys, "case", "note", "x", "--attach", str(case.root / "none"))
    assert code == 2 and "cannot be read" in err
    code, _, err = gm(case, capsys, "case", "note", "   ")
    assert code == 2 and "needs some text" in err
    code, _, err = gm(case, capsys, "case", "show", "1")  # an archived item, not a note
    assert code == 2 and "no note with seq 1" in err
    assert len(case.vault.rows()) == before


def test_a_note_about_one_offender_goes_only_into_that_offenders_export(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        gm(case, capsys, "case", "note", "Burner's number blocked", "--offender", "burner")[0] == 0
    )
    assert gm(case, capsys, "case", "note", "Changed my phone number")[0] == 0
    jo, burner = case.root / "jo", case.root / "burner"
    assert (
        gm(case, capsys, "evidence", "export", "--offender", "Jo Stalker", "--out", str(jo))[0] == 0
    )
    assert (
        gm(case, capsys, "evidence", "export", "--offender", "Burner", "--out", str(burner))[0] == 0
    )
    jo_text = (jo / "journal.jsonl").read_text() + (jo / "report.html").read_text()
    burner_text = (burner / "journal.jsonl").read_text() + (burner / "report.html").read_text()
    assert "Changed my phone number" in jo_text and "Changed my phone number" in burner_text
    assert "number blocked" not in jo_text and "number blocked" in burner_text


def test_an_abuse_report_sent_by_hand_is_noted_with_its_kind_and_addressee(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "Sent abuse/jo-stalker-stalk.example.eml from my mail program"
    args = ["--kind", "abuse-report", "--to", "abuse@stalk.example", "--offender", "jo stalker"]
    code, out, err = gm(case, capsys, "case", "note", text, *args)
    assert (code, err) == (0, ""), err
    seq = int(out.split("entry ")[1].split()[0])
    code, out, _ = gm(case, capsys, "case", "list")
    assert "[abuse-report to abuse@stalk.example] Sent abuse/" in out
    code, out, _ = gm(case, capsys, "case", "show", str(seq))
    assert "kind:  abuse-report, to abuse@stalk.example" in out and "about: Jo Stalker" in out
    row = case.vault.row(seq)
    assert row is not None
    body = json.loads(row.body)
    assert (body["note_kind"], body["to"]) == ("abuse-report", "abuse@stalk.example")
    code, _, err = gm(case, capsys, "case", "note", "x", "--kind", "abuse-report", "--to", "a\nb")
    assert code == 2 and "--to is one line" in err
