"""An export for one offender holds nothing about anyone else, and still verifies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.export.verify import verify_bundle
from tests.unit.report_case import NOW, OTHER_MARKS, SAM, ReportCase, make_report_case


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportCase]:
    c = make_report_case(tmp_path_factory.mktemp("privacy"))
    yield c
    c.storage.close()


def _export(case: ReportCase, name: str) -> Path:
    evidence = select(case.vault.rows(), tenant="jane", criteria=Criteria(offenders=(SAM,)))
    out = case.root / name
    write_bundle(case.vault, evidence, out, now=NOW, version="9.9")
    return out


def _texts(folder: Path) -> dict[str, str]:
    """Every file of the bundle as text; the PDF as its text layer and its metadata too."""
    out: dict[str, str] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        out[name] = path.read_bytes().decode("utf-8", "replace")
        if name == "report.pdf":
            for tool in (["pdftotext", str(path), "-"], ["pdfinfo", str(path)]):
                run = subprocess.run(tool, capture_output=True, check=True)
                out[f"{name} ({tool[0]})"] = run.stdout.decode()
    return out


def test_bundle_for_one_offender_names_no_one_else_anywhere(case: ReportCase) -> None:
    texts = _texts(_export(case, "sam"))
    assert any("stalker@example.net" in t for t in texts.values())  # the grep can find things
    found = [(name, mark) for name, t in texts.items() for mark in OTHER_MARKS if mark in t]
    assert found == []


def test_zip_for_one_offender_names_no_one_else_in_any_member(case: ReportCase) -> None:
    path = _export(case, "sam.zip")
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i).decode("utf-8", "replace") for i in z.infolist()}
    assert not [(n, m) for n, t in members.items() for m in OTHER_MARKS if m in t or m in n]


def test_other_entries_stand_as_their_hashes_and_the_chain_still_verifies(
    case: ReportCase,
) -> None:
    path = _export(case, "sam-chain")
    rows = [json.loads(line) for line in (path / "journal.jsonl").read_text().splitlines()]
    withheld = [r for r in rows if "withheld" in r]
    kinds = {json.loads(r["body"])["kind"] for r in rows if "body" in r}
    assert withheld and all(set(r) == {"seq", "prev_hash", "hash", "withheld"} for r in withheld)
    # The other offender's items, her note, her abuse report and her earlier export: hashes.
    # Sam's own earlier exports (this module's other tests) are his chain of custody: shown.
    assert kinds - {"export"} == {"archived", "action", "warning", "note", "abuse_report"}
    exports = [json.loads(r["body"]) for r in rows if '"kind":"export"' in r.get("body", "")]
    assert all(e["offenders"] == [SAM] for e in exports)
    notes = [json.loads(r["body"]) for r in rows if "body" in r and "note" in r["body"]]
    # The person's own note and the abuse report noted about Sam; none of those about Olga.
    assert [n["text"][:6] for n in notes if n["kind"] == "note"] == ["Called", "Sent t"]
    assert [r["seq"] for r in rows] == list(range(rows[0]["seq"], rows[-1]["seq"] + 1))
    assert verify_bundle(path) == []
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=path, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout


def test_readme_chain_check_passes_over_withheld_entries_and_catches_a_forged_one(
    case: ReportCase,
) -> None:
    path = _export(case, "sam-readme")
    readme = (path / "README.txt").read_text()
    script = re.search(r"^    python3 - <<'EOF'\n.*?^    EOF$", readme, re.S | re.M)
    assert script is not None
    code = "\n".join(line[4:] for line in script.group(0).splitlines())
    ok = subprocess.run(["bash", "-c", code], cwd=path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "journal chain intact" in ok.stdout, ok.stderr
    lines = (path / "journal.jsonl").read_text().splitlines()
    at = next(n for n, line in enumerate(lines) if "withheld" in line)
    forged = json.loads(lines[at])
    forged["hash"] = "0" * 64  # a stand-in that is not the real entry's hash
    lines[at] = json.dumps(forged)
    (path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        ["bash", "-c", code], cwd=path, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "chain broken" in bad.stderr
    assert any("chain broken" in p for p in verify_bundle(path))


def test_guardmail_evidence_verify_accepts_the_redacted_bundle(case: ReportCase) -> None:
    path = _export(case, "sam-cli")
    run = subprocess.run(
        [sys.executable, "-m", "guardmail", "evidence", "verify", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
        env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
