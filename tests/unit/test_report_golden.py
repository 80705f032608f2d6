"""The report's text layer for a fixed vault, compared line by line with a reviewed copy.

The golden file is tests/unit/golden/report-sam.txt (``pdftotext -layout``). After a deliberate
change to the report, regenerate it with GUARDMAIL_UPDATE_GOLDEN=1, read the diff, commit it.
Each page is also rendered (pdftoppm) to prove every page draws.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.export.bundle import ReportOptions, write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from tests.unit.report_case import NOW, SAM, ReportCase, make_report_case

GOLDEN = Path(__file__).parent / "golden" / "report-sam.txt"
PROTECTED = (("Protected person", "Jane Doe"), ("Police report", "Springfield PD 2026-1234"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    case: ReportCase = make_report_case(tmp_path_factory.mktemp("golden"))
    evidence = select(case.vault.rows(), tenant="jane", criteria=Criteria(offenders=(SAM,)))
    out = case.root / "sam"
    options = ReportOptions(protected=PROTECTED)
    write_bundle(case.vault, evidence, out, now=NOW, version="9.9", options=options)
    yield out / "report.pdf"
    case.storage.close()


def _text(pdf: Path) -> str:
    run = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True)
    return run.stdout.decode()


def test_report_text_matches_the_reviewed_copy(report: Path) -> None:
    # The journal's last hash covers an earlier export entry that names its (temporary) path.
    last = json.loads((report.parent / "journal.jsonl").read_text().splitlines()[-1])["hash"]
    # The signed head's root covers that entry too; the signing key is made for each run.
    log = json.loads((report.parent / "manifest.json").read_text())["log"]
    text = (
        _text(report)
        .replace(last, "<the last journal entry's hash>")
        .replace(log["root_hash"], "<the signed head's root hash>")
        .replace(log["key_fingerprint"], "<the signing key's fingerprint>")
    )
    if os.environ.get("GUARDMAIL_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text.splitlines() == GOLDEN.read_text().splitlines()


def test_report_says_what_an_officer_needs_in_words(report: Path) -> None:
    text = _text(report)
    flat = " ".join(text.split())
    for needed in (
        "Jane Doe",
        "Springfield PD 2026-1234",
        "Sam Stalker: 4 items, 3 after the warning",
        "Ich weiß wo du wohnst",  # decoded, not =?utf-8?q?...
        "Säm Stälker <stalker@example.net>",
        "2026-11-01 21:15:00 UTC (Date: Sun, 01 Nov 2026 22:15:00 +0100)",  # sent, beside
        "received 2026-11-02 09:30:00 UTC",  # received
        "I know where you live. I saw your car on Mühlenweg.",
        "car.png image/png 172",
        "broken.png image/png 60",
        "looks like stalker@example.net: Cyrillic а (U+0430)",
        "sent after the warning sent 2026-11-03 12:00 UTC",
        "[2026-11-05 18:00:00 UTC] sam@chat.example/phone: Why don't you answer?",
        "▶ warning sent 2026-11-03 12:00 UTC to stalker@example.net",
        "Do not contact me again. Any further message goes to the police.",
        "case note (entry 6, 10:00 UTC): Called Springfield police",
        "page 1 of ",
        "Certification of records (template)",
        "Chat transcript",
        "Contents",
        "Sam Stalker (4 items)",
        "Sam Stalker: 1 item sent before the warning, 3 after it",
        "abuse report sent 11:00 UTC to abuse@chat.example (case note, entry",
        "Item 1, images (small copies; the originals are in the file)",
        "In abuse/: for each offender",
    ):
        assert needed in flat, needed
    assert "\r" not in text and "=?utf-8?" not in text.split("Appendix")[0]
    assert "Reported Olga" not in text and "elsewhere" not in text
    assert "alert(" not in text  # the HTML's script is dropped, not shown


def test_pdf_metadata_has_the_reports_creation_date(report: Path) -> None:
    info = subprocess.run(["pdfinfo", str(report)], capture_output=True, check=True).stdout
    assert b"CreationDate:    Wed Nov 25 12:00:00 2026 UTC" in info
    assert b"Title:           Evidence report: Jane Doe, 2026-11-02 to 2026-11-06" in info


def test_every_page_renders_and_is_numbered_x_of_y(report: Path, tmp_path: Path) -> None:
    info = subprocess.run(["pdfinfo", str(report)], capture_output=True, check=True).stdout
    pages = int(next(line for line in info.decode().splitlines() if line.startswith("Pages:"))[6:])
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(report), str(tmp_path / "p")], check=True)
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == pages > 1
    assert all(p.stat().st_size > 1000 for p in images)  # not blank
    text = _text(report)
    for n in range(1, pages + 1):
        assert f"page {n} of {pages}" in text
    # No page holds only its footer (an empty page left by a break).
    for n, page in enumerate(text.split("\f")[:pages], start=1):
        assert len([line for line in page.splitlines() if line.strip()]) > 3, f"page {n}"


def test_the_good_image_is_embedded_as_our_small_copy_and_the_broken_one_is_not(
    report: Path,
) -> None:
    listing = subprocess.run(
        ["pdfimages", "-list", str(report)], capture_output=True, check=True
    ).stdout.decode()
    rows = [line.split() for line in listing.splitlines()[2:]]
    sizes = [(r[3], r[4]) for r in rows if r[2] == "image"]  # not the chart's alpha mask
    assert ("32", "20") in sizes  # car.png, re-encoded at its own size (never enlarged)
    assert len(sizes) == 2  # the timeline chart and car.png: broken.png is listed only
