"""Chain of custody: every view, export, verification and review decision is a journal entry
saying who and when, listed by ``evidence list --kind custody``, in the report's timeline, and
withheld from another offender's bundle like anything else about them."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.errors import VaultUnavailable
from guardmail.export.verify import verify_bundle
from guardmail.vault import custody
from guardmail.vault.store import Vault
from tests.unit.report_case import (
    FIRST,
    OLGA,
    OTHER_MAIL,
    OTHER_MARKS,
    SAM,
    ReportCase,
    make_report_case,
)

CONFIG = """\
state_dir: {root}/state
tenant: jane
offenders:
  - name: {sam}
    addresses: [stalker@example.net]
  - name: {olga}
    addresses: [other@elsewhere.example]
"""
ME = {"via": "command line", "uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name}


@pytest.fixture
def case(tmp_path: Path) -> Iterator[ReportCase]:
    c = make_report_case(tmp_path)
    (tmp_path / "guardmail.yaml").write_text(CONFIG.format(root=tmp_path, sam=SAM, olga=OLGA))
    yield c
    c.storage.close()


def gm(
    case: ReportCase, capsysbinary: pytest.CaptureFixture[bytes], *args: str
) -> tuple[int, bytes]:
    code = main(["-c", str(case.root / "guardmail.yaml"), *args])
    return code, capsysbinary.readouterr().out


def _seq_of(case: ReportCase, raw: bytes) -> int:
    import hashlib

    sha = hashlib.sha256(raw).hexdigest()
    return next(r.seq for r in case.vault.rows(kind="archived") if r.sha256 == sha)


def _custody(
    case: ReportCase, capsysbinary: pytest.CaptureFixture[bytes]
) -> list[dict[str, object]]:
    code, out = gm(case, capsysbinary, "evidence", "list", "--kind", "custody", "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_a_show_an_export_and_a_verification_are_custody_entries(
    case: ReportCase, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    sam = _seq_of(case, FIRST)
    before = len(_custody(case, capsysbinary))  # Olga's earlier export, made without a `by`
    code, out = gm(case, capsysbinary, "evidence", "show", str(sam))
    assert code == 0 and out == FIRST
    code, _ = gm(
        case, capsysbinary, "evidence", "export", "--offender", SAM, "--out", str(case.root / "sam")
    )
    assert code == 0
    code, _ = gm(case, capsysbinary, "evidence", "verify")
    assert code == 0  # the custody entries themselves verify: chain, log, HEAD
    listed = _custody(case, capsysbinary)[before:]
    assert [e["entry_kind"] for e in listed] == ["custody", "export", "custody"]
    for e in listed:
        assert {k: e["by"][k] for k in ME} == ME  # type: ignore[index]
    view, export, verify = (str(e["what"]) for e in listed)
    assert view.startswith(f"entry {sam} viewed (evidence show) by {ME['user']} (uid")
    assert export.startswith(f"exported 4 items ({SAM}) by {ME['user']}")
    assert "vault verified by" in verify and "intact" in verify
    code, out = gm(case, capsysbinary, "evidence", "list")
    assert b"custody" not in out  # the default listing is the evidence itself
    assert gm(case, capsysbinary, "evidence", "verify")[0] == 0


def test_custody_entries_are_in_the_bundle_and_report_only_for_its_offender(
    case: ReportCase, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    sam, olga = _seq_of(case, FIRST), _seq_of(case, OTHER_MAIL)
    assert gm(case, capsysbinary, "evidence", "show", str(sam))[0] == 0
    assert gm(case, capsysbinary, "evidence", "show", str(olga))[0] == 0
    assert (
        gm(
            case,
            capsysbinary,
            "evidence",
            "export",
            "--offender",
            OLGA,
            "--out",
            str(case.root / "olga2"),
        )[0]
        == 0
    )
    out = case.root / "sam"
    assert (
        gm(case, capsysbinary, "evidence", "export", "--offender", SAM, "--out", str(out))[0] == 0
    )
    assert verify_bundle(out) == []
    rows = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    shown = {json.loads(r["body"])["seq"]: json.loads(r["body"]) for r in rows if "body" in r}
    views = [b for b in shown.values() if b["kind"] == "custody"]
    assert [v["entry"] for v in views] == [sam]  # Olga's view and export: hashes only
    assert not [b for b in shown.values() if b["kind"] == "export"]
    html = (out / "report.html").read_text()
    assert f"entry {sam} viewed (evidence show) by {ME['user']}" in html
    texts = {
        p.name: p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()
    }
    assert [(n, m) for n, t in texts.items() for m in OTHER_MARKS if m in t] == []


def test_nothing_is_shown_when_the_view_cannot_be_journaled(
    case: ReportCase, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Vault, *args: object, **kwargs: object) -> object:
        raise VaultUnavailable("disk full")

    monkeypatch.setattr(Vault, "record", refuse)
    code, out = gm(case, capsysbinary, "evidence", "show", str(_seq_of(case, FIRST)))
    assert code == 1 and out == b""


def test_who_names_the_sudo_user_and_a_control_socket_peer() -> None:
    by = custody.local_user({"SUDO_USER": "jane", "SUDO_UID": "1000"})
    assert by["sudo_user"] == "jane" and by["sudo_uid"] == 1000
    assert custody.who(by).endswith("via sudo by jane on the command line")
    peer = custody.socket_peer(4242, 0)
    assert custody.who(peer) == "root (uid 0), process 4242 on the control socket"
    assert custody.who(None) == "(not recorded)"
