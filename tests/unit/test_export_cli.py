"""guardmail evidence export / verify PATH / abuse-report: exit codes and what they print."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.core.item import mail_item, mail_recipients
from guardmail.kept import OUTGOING, keep_many
from guardmail.pipeline import Pipeline
from tests.unit.test_export import RULES, Case, make_case

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    c = make_case(tmp_path)
    yield c
    c.storage.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def gm(case: Case, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run(capsys, "-c", str(case.config), "evidence", *args)


@pytest.mark.parametrize("name", ["bundle", "bundle.zip"])
def test_export_then_verify_path_without_a_config(
    case: Case, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    out = case.root / name
    code, text, _ = gm(case, capsys, "export", "--offender", "jo stalker", "--out", str(out))
    assert code == 0
    assert f"exported 3 items, 1 warning (Jo Stalker) to {out}" in text
    assert "journaled   as entry 10 (export)" in text
    code, text, err = run(capsys, "evidence", "verify", str(out))  # no -c: no vault needed
    assert (code, err) == (0, "") and "bundle intact" in text


def test_verify_path_exits_1_naming_each_problem_and_2_when_unreadable(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    out = case.root / "bundle"
    assert gm(case, capsys, "export", "--out", str(out))[0] == 0
    (out / "README.txt").write_text("changed")
    (out / "extra.txt").write_text("added")
    (out / "report.html").unlink()
    code, _, err = run(capsys, "evidence", "verify", str(out))
    assert code == 1
    assert err.splitlines() == [  # in SHA256SUMS order, then what it does not list
        f"guardmail: {out}: missing: report.html (listed in SHA256SUMS)",
        f"guardmail: {out}: changed: README.txt (SHA-256 differs from SHA256SUMS)",
        f"guardmail: {out}: added: extra.txt (not listed in SHA256SUMS)",
    ]
    code, _, err = run(capsys, "evidence", "verify", str(case.root / "nope.zip"))
    assert code == 2 and "nope.zip does not exist" in err


def test_verify_without_path_still_checks_the_vault(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = gm(case, capsys, "verify")
    assert code == 0 and "vault jane: 9 entries intact" in text


def test_export_by_date_range(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    out = case.root / "b"
    code, _, _ = gm(
        case, capsys, "export", "--since", "2026-11-21", "--until", "2026-11-21", "--out", str(out)
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["subject"] for i in manifest["items"]] == ["<script>alert(1)</script>"]
    assert manifest["criteria"] == {"offenders": [], "since": "2026-11-21", "until": "2026-11-21"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offender", "Nobody"], "unknown offender 'Nobody'"),
        (["--offender", "never wrote"], "no archived item matches offender never wrote"),
        (["--since", "2027-01-01"], "no archived item matches any offender since 2027-01-01"),
        (["--since", "2026-11-22", "--until", "2026-11-21"], "is after --until"),
    ],
)
def test_export_exits_2_with_a_clear_message(
    case: Case, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = gm(case, capsys, "export", *args, "--out", str(case.root / "out"))
    assert code == 2 and message in err
    assert not (case.root / "out").exists()


def test_export_rejects_a_malformed_date_and_an_existing_target(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        gm(case, capsys, "export", "--since", "25/11/2026", "--out", str(case.root / "o"))
    assert exc.value.code == 2 and "not a date of the form YYYY-MM-DD" in capsys.readouterr().err
    code, _, err = gm(case, capsys, "export", "--out", str(case.config))
    assert code == 2 and "already exists" in err


def test_abuse_report_is_written_not_sent_and_addressed_to_the_sending_domain(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    out = case.root / "report.eml"
    code, text, _ = gm(case, capsys, "abuse-report", "--offender", "jo stalker", "--out", str(out))
    assert code == 0, text
    assert f"wrote {out}" in text and "not sent" in text
    assert "To:       abuse@stalk.example" in text and "From:     jane@home.example" in text
    assert "2 listed, 2 attached unaltered" in text  # the XMPP item is not mail
    msg = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg["To"] == "abuse@stalk.example"


def test_abuse_report_leaves_out_the_person_s_own_mail_to_the_offender(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = b"From: jane@home.example\r\nTo: jo@stalk.example\r\nSubject: stop\r\n\r\nStop.\r\n"
    sent = mail_item(raw, tenant="jane", account="a", source_ref="imap:s", received_at=NOW)
    sent = replace(sent, identities=mail_recipients(raw))
    pipeline = Pipeline(vault=case.vault, rules=RULES, clock=lambda: NOW)
    keep_many(pipeline, [sent], [pipeline.judge_recipients(sent)], direction=OUTGOING)
    out = case.root / "report.eml"
    code, text, _ = gm(case, capsys, "abuse-report", "--offender", "jo stalker", "--out", str(out))
    assert code == 0, text
    assert "2 listed, 2 attached unaltered" in text  # not 3: the person's own mail is not theirs
    assert b"Stop." not in out.read_bytes()
    # Not even when asked for the person's own domain: no mail of the offender's was sent there.
    code, _, err = gm(
        case,
        capsys,
        "abuse-report",
        "--offender",
        "jo stalker",
        "--domain",
        "home.example",
        "--out",
        str(case.root / "own.eml"),
    )
    assert code == 2 and "was sent from 'home.example'" in err


def test_abuse_report_options(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    out = case.root / "r.eml"
    code, text, _ = gm(
        case,
        capsys,
        "abuse-report",
        "--offender",
        "Burner",
        "--to",
        "abuse@isp.example",
        "--from",
        "me@home.example",
        "--out",
        str(out),
    )
    assert code == 0 and "To:       abuse@isp.example" in text and "me@home.example" in text
    code, _, err = gm(
        case,
        capsys,
        "abuse-report",
        "--offender",
        "Burner",
        "--send",
        "--out",
        str(case.root / "s.eml"),
    )
    assert code == 2 and "--send needs a submission server" in err
    assert not (case.root / "s.eml").exists()
    code, _, err = gm(case, capsys, "abuse-report", "--offender", "Nobody", "--out", str(out) + "2")
    assert code == 2 and "unknown offender" in err
    code, _, err = gm(case, capsys, "abuse-report", "--offender", "Burner", "--out", str(out))
    assert code == 2 and "already exists" in err


def test_export_bundle_checks_with_sha256sum_after_the_cli(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    out = case.root / "bundle"
    assert gm(case, capsys, "export", "--out", str(out))[0] == 0
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out, check=False)
    assert check.returncode == 0


def test_export_puts_the_case_settings_on_the_first_page_and_no_bodies_leaves_text_out(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    with case.config.open("a") as f:
        f.write(
            "case:\n  name: Jane Doe\n  references:\n"
            "    - {label: Police report, value: Springfield PD 2026-1234}\n"
            "  contacts: [Officer Diaz]\n"
        )
    full, summary = case.root / "full", case.root / "summary"
    assert gm(case, capsys, "export", "--out", str(full))[0] == 0
    assert gm(case, capsys, "export", "--no-bodies", "--out", str(summary))[0] == 0
    texts = {}
    for path in (full, summary):
        run_ = subprocess.run(["pdftotext", str(path / "report.pdf"), "-"], capture_output=True)
        texts[path.name] = run_.stdout.decode()
    first = texts["full"].split("\f")[0]
    assert "Jane Doe" in first and "Springfield PD 2026-1234" in first and "Officer Diaz" in first
    assert "I found you." in texts["full"]
    assert "I found you." not in texts["summary"] and "summary copy" in texts["summary"]
    assert "first contact" in texts["summary"]  # subjects stay
