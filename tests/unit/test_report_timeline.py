"""The timeline judges "after the warning" by when an item was sent, not when it was archived."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from guardmail.export.chart import timeline_png
from guardmail.export.content import Content
from guardmail.export.details import Details
from guardmail.export.evidence import Criteria, Evidence, ExportItem, SentWarning
from guardmail.export.pdf import render_pdf
from guardmail.export.summary import NoteView, Report, WarningView, build, sent_at, timeline

WARNED = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_sent_at_is_the_date_field_unless_missing_or_implausible() -> None:
    received = _at(5)
    assert sent_at(received, _at(1)) == _at(1)  # found on a first scan: days old
    assert sent_at(received, received + timedelta(minutes=30)) == received + timedelta(minutes=30)
    assert sent_at(received, None) == received
    assert sent_at(received, received + timedelta(hours=2)) == received  # from the future
    assert sent_at(received, datetime(1970, 1, 1, tzinfo=UTC)) == received


def _item(n: int, received: datetime) -> ExportItem:
    return ExportItem(
        index=n,
        seq=n,
        sha256=f"{n:064x}",
        size=1,
        file=f"items/{n}.eml",
        received_at=received,
        archived_at=received.isoformat(),
        channel="mail",
        account="home",
        source_ref=f"INBOX/{n}",
        offender="Jo",
        rule="addresses[0]",
        header="From",
        action="quarantine",
        done="",
        subject=f"s{n}",
        message_id="",
        date="",
    )


def _report(
    dated: list[tuple[datetime, datetime | None]], notes: tuple[NoteView, ...] = ()
) -> Report:
    items = tuple(_item(n, r) for n, (r, _) in enumerate(dated, start=1))
    details = [
        Details(headers=(), sender="jo@x.example", first_words="", content=Content(sent=d))
        for _, d in dated
    ]
    warning = SentWarning(
        seq=99,
        sha256="0" * 64,
        file="warning-jo.eml",
        offender="Jo",
        to="jo@x.example",
        sent_at=WARNED.isoformat(),
        message_id="<w@x>",
    )
    evidence = Evidence(
        tenant="jane",
        criteria=Criteria(),
        offenders=("Jo",),
        items=items,
        warnings=(warning,),
        journal=(),
        head=None,
    )
    return build(
        evidence,
        details=details,
        warnings=[WarningView(warning=warning, subject="Stop", text="Stop.")],
        now=_at(25),
        version="9.9",
        verification="",
        notes=notes,
    )


def test_late_delivery_of_a_message_sent_before_the_warning_is_not_after_it() -> None:
    report = _report(
        [
            (_at(2), _at(1)),  # before, and received before
            (_at(4), _at(2)),  # received after the warning, but sent before it
            (_at(4), None),  # no Date: its receipt stands in: after
            (_at(4), _at(3, 13)),  # sent after
            (_at(4), _at(20)),  # a Date in the future: its receipt (after)
        ]
    )
    assert [r.after_warning for r in report.rows] == [False, False, True, True, True]
    assert report.per_offender[0].after_warning == 3
    assert report.per_day["Jo"] == {
        date(2026, 11, 1): 1,
        date(2026, 11, 2): 1,
        date(2026, 11, 3): 1,
        date(2026, 11, 4): 2,
    }
    events = [(e.day.day, e.what, e.count, e.after_warning) for e in timeline(report)]
    assert events == [
        (1, "items", 1, 0),
        (2, "items", 1, 0),
        (3, "warning", 0, 0),
        (3, "items", 1, 1),
        (4, "items", 2, 2),
    ]


def test_an_abuse_report_noted_in_the_case_journal_is_on_the_timeline_as_sent() -> None:
    note = NoteView(
        seq=50,
        time=_at(6, 9),
        text="Sent the abuse report by mail.",
        kind="abuse-report",
        to="abuse@x.example",
        offender="Jo",
    )
    report = _report([(_at(2), _at(2))], notes=(note,))
    [event] = [e for e in timeline(report) if e.what == "report"]
    assert event.offender == "Jo"
    assert event.text.startswith("abuse report sent 09:00 UTC to abuse@x.example (case note")


def test_pdf_has_contents_with_page_numbers_and_an_outline_per_section_and_offender(
    tmp_path: Path,
) -> None:
    report = _report([(_at(2), _at(2)), (_at(4), _at(4))])
    second = replace(report.rows[1], item=replace(report.rows[1].item, offender="Max Mustermann"))
    report = replace(report, rows=(report.rows[0], second))
    pdf = render_pdf(report, chart_png=timeline_png(report.per_day))
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()
    contents = text.split("Contents", 1)[1].split("Timeline: items per day", 1)[0]
    for entry in (
        "Summary",
        "Timeline",
        "Warning to Jo",
        "Items",
        "Item details",
        "Jo (1 items)",
        "Max Mustermann (1 items)",
        "Appendix: full headers",
        "Certification (template)",
    ):
        assert re.search(rf"{re.escape(entry)}[ .]+\d+\s*$", contents, re.MULTILINE), entry
    # The outline (bookmarks): reportlab writes its entries uncompressed, one /Title each.
    titles = re.findall(rb"/Title \(((?:[^()\\]|\\.)*)\)", pdf)
    assert b"Item details" in titles and b"Jo \\(1 items\\)" in titles
    assert b"Max Mustermann \\(1 items\\)" in titles and b"/Outlines" in pdf
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True).stdout
    assert b"Author:          guardmail 9.9" in info  # no case name set
    assert b"CreationDate:    Wed Nov 25 12:00:00 2026 UTC" in info


def test_contents_of_a_report_with_many_offenders_fit_one_page(tmp_path: Path) -> None:
    base = _report([(_at(2), _at(2))] * 60)
    rows = tuple(
        replace(r, item=replace(r.item, offender=f"Offender {n:02d}"))
        for n, r in enumerate(base.rows)
    )
    warning = base.warnings[0]
    warnings = tuple(
        replace(warning, warning=replace(warning.warning, offender=f"Offender {n:02d}"))
        for n in range(60)
    )
    report = replace(base, rows=rows, warnings=warnings)
    pdf = render_pdf(report, chart_png=timeline_png(report.per_day))
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    page2 = subprocess.run(
        ["pdftotext", "-layout", "-f", "2", "-l", "2", str(path), "-"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "Contents" in page2 and "Warning to Offender 00" in page2
    assert "more sections: see the PDF's bookmarks)" in page2
    assert "Offender 59 (1 items)" not in page2  # per-offender entries left out first
    titles = re.findall(rb"/Title \(((?:[^()\\]|\\.)*)\)", pdf)
    assert b"Offender 59 \\(1 items\\)" in titles and b"Warning to Offender 59" in titles
