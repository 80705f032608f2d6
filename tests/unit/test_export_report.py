"""The printable report: counts, dates and hashes a reader can see, hostile text kept inert."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from guardmail.export.chart import timeline_png
from tests.unit.test_export import HOSTILE, WARNING, Case, export, make_case


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Case, Path]]:
    case = make_case(tmp_path_factory.mktemp("report"))
    yield case, export(case, "bundle").path
    case.storage.close()


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True)
    return out.stdout.decode()


def test_pdf_cover_names_who_what_period_how_many_when_and_version(
    bundle: tuple[Case, Path],
) -> None:
    text = pdf_text(bundle[1] / "report.pdf")
    cover = text.split("\f")[0]
    assert "Evidence report" in cover
    assert "Protected person" in cover and "jane" in cover  # no case name set: the tenant
    # Jo's third mail was received after the warning but its Date: is before it (every mail
    # here is dated 2026-11-20): judged by when it was sent, only the chat counts as after.
    assert "Jo Stalker: 3 items, 1 after the warning" in cover
    assert "Burner: 1 items" in cover
    assert "wrote from: jo@stalk.example, jo@chat.example" in cover
    assert "2026-11-20 to 2026-11-23" in cover
    assert "2026-11-20 09:30:00 – 2026-11-23 09:30:00" in cover
    assert "4 (mail: 3, xmpp: 1); 1 sent after the warning" in cover
    assert "2026-11-25 12:00:00 by guardmail 9.9" in cover
    assert "page 1 of " in cover


def test_pdf_lists_every_items_hash_and_date_with_summary_before_detail(
    bundle: tuple[Case, Path],
) -> None:
    case, path = bundle
    text = pdf_text(path / "report.pdf")
    for raw in case.raws:
        digest = hashlib.sha256(raw).hexdigest()
        assert digest in text  # whole, in the item's detail
        assert text.count(digest[:32]) >= 2 and text.count(digest[32:]) >= 2  # and in the table
    for day in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"):
        assert day in text
    order = [text.index(s) for s in ("Timeline", "How to verify this", "Items (4)")]
    assert order == sorted(order)
    assert text.index("Items (4)") < text.rindex("Item details")  # the first is the contents


def test_pdf_shows_the_warning_its_date_and_text(bundle: tuple[Case, Path]) -> None:
    text = pdf_text(bundle[1] / "report.pdf")
    assert "Warning sent to Jo Stalker" in text
    assert "2026-11-21 12:30:00 UTC" in text
    assert "Do not contact me again. Any further message goes to the police." in text
    assert hashlib.sha256(WARNING).hexdigest() in text


def test_pdf_prints_headers_and_hostile_text_literally(bundle: tuple[Case, Path]) -> None:
    text = pdf_text(bundle[1] / "report.pdf")
    assert HOSTILE in text  # escaped for reportlab's markup, so shown, not parsed
    assert "Message-ID: <m2@stalk.example>" in text
    assert "I am watching you every day" in text  # first words stand in for a missing subject
    assert "sha256sum -c SHA256SUMS" in text


def test_html_escapes_a_script_in_a_subject_and_embeds_the_chart(
    bundle: tuple[Case, Path],
) -> None:
    html = (bundle[1] / "report.html").read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "default-src 'none'" in html
    assert 'src="data:image/png;base64,iVBORw0KGgo' in html
    assert "4 (mail: 3, xmpp: 1)" in " ".join(html.split())


def test_timeline_is_a_png_even_for_a_single_day_or_none() -> None:
    for per_day in ({}, {"A $x$": {date(2026, 1, 1): 3}}):
        png = timeline_png(per_day)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_large_report_keeps_its_tables_within_the_page(tmp_path: Path) -> None:
    from guardmail.export.evidence import ExportItem
    from guardmail.export.pdf import render_pdf
    from guardmail.export.summary import Report, Row

    when = datetime(2026, 11, 1, tzinfo=UTC)
    rows = tuple(
        Row(
            item=ExportItem(
                index=i,
                seq=i,
                sha256="ab" * 32,
                size=10,
                file=f"items/{i:04d}.eml",
                received_at=when,
                archived_at="",
                channel="mail",
                account="a",
                source_ref="r",
                offender="O",
                rule="r",
                header="From",
                action="block",
                done="moved to the folder " + "Quarantine/" * 30,
                subject="s",
                message_id="",
                date="",
            ),
            sender=f"Someone <{'x' * 300}@{'long-domain.' * 12}example>",
            title="word " * 200,
            headers=(("X-Long", "y" * 5000),) * 3,
        )
        for i in range(1, 301)
    )
    report = Report(
        tenant="t",
        offenders=("O",),
        since=None,
        until=None,
        first=when,
        last=when,
        generated_at=when,
        version="1",
        rows=rows,
        warnings=(),
        per_offender=(),
        per_channel=(("mail", 300),),
        per_day={"O": {when.date(): 300}},
        journal_first=1,
        journal_last=300,
        verification="",
    )
    seen: list[int] = []
    pdf = render_pdf(
        report, chart_png=timeline_png(report.per_day), progress=lambda d, t: seen.append(d)
    )
    (tmp_path / "r.pdf").write_bytes(pdf)
    assert seen[-1] == 300
    assert "Items (300)" in pdf_text(tmp_path / "r.pdf")
    # Nothing drawn past the right margin (A4 is 595 pt wide, the margin 15 mm = 42.5 pt),
    # and long values are wrapped, not cut.
    bbox = subprocess.run(
        ["pdftotext", "-bbox", "-f", "2", "-l", "12", str(tmp_path / "r.pdf"), "-"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    right = [float(x) for x in re.findall(r'xMax="([0-9.]+)"', bbox)]
    assert right and max(right) <= 595.3 - 42.5 + 1
    details = pdf_text(tmp_path / "r.pdf").rsplit("Item details", 1)[1]  # not the contents
    assert "\u2026" not in details
    assert "Quarantine/Quarantine/" in details


def test_an_item_with_huge_header_fields_still_lays_out(tmp_path: Path) -> None:
    """2,000-character From, To, Cc and Subject (the most details keep) and every flag at once
    are more than a page of facts: they must split or be bounded, never stop the export."""
    from guardmail.export.content import Content
    from guardmail.export.evidence import ExportItem
    from guardmail.export.pdf import render_pdf
    from guardmail.export.summary import Report, Row

    when = datetime(2026, 11, 1, tzinfo=UTC)
    huge = "a@b.example, " * 160
    item = ExportItem(
        index=1, seq=1, sha256="ab" * 32, size=10, file="items/0001.eml", received_at=when,
        archived_at="", channel="mail", account="a", source_ref="r", offender="O", rule="r",
        header="From", action="block", done="", subject=huge, message_id="", date="",
    )  # fmt: skip
    content = Content(sender=huge, to=huge, cc=huge, subject=huge, text="t")
    row = Row(item=item, sender=huge, title=huge, headers=(), content=content, flags=(huge,) * 20)
    report = Report(
        tenant="t", offenders=("O",), since=None, until=None, first=when, last=when,
        generated_at=when, version="1", rows=(row,), warnings=(), per_offender=(),
        per_channel=(("mail", 1),), per_day={"O": {when.date(): 1}}, journal_first=1,
        journal_last=1, verification="",
    )  # fmt: skip
    (tmp_path / "r.pdf").write_bytes(render_pdf(report, chart_png=timeline_png(report.per_day)))
    flat = " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert "more characters: see the item file" in flat
