"""report.pdf: the printable report (reportlab platypus): first page, timeline, items, appendix.

Contracts:
- The first page is what an officer reads in a minute: who is protected, who the offenders are
  and the addresses they wrote from, the period, the counts before and after the warning, what
  the bundle holds and how to check it. Then the timeline (a chart and the same by day, in
  words), the warning as sent, how to verify, the table of every item, each item in full
  (pdf_items.py), and the appendix of full headers.
- Fonts are DejaVu Sans and Sans Mono, embedded (as subsets) from matplotlib's data, so
  ``pdftotext`` reads names and subjects back; characters DejaVu lacks show as an empty box.
- Every page says "page x of y"; the PDF's outline has one entry per section; its creation date
  is the report's ``generated_at`` (the output is otherwise invariant: same input, same bytes).
- ``progress(done, total)``, if given, is called as item details are laid out.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    Image,
    PageBreak,
    PageTemplate,
    Paragraph,
    Preformatted,
    Spacer,
)

from guardmail.export.details import clean
from guardmail.export.pdf_case import case_journal, certification
from guardmail.export.pdf_items import items_story
from guardmail.export.pdf_style import (
    SANS,
    Mark,
    Styles,
    esc,
    facts_table,
    grid,
    register_fonts,
    when,
)
from guardmail.export.pdf_toc import Contents, Slot, capacity
from guardmail.export.summary import Report, timeline

Progress = Callable[[int, int], None]

MARGIN = 15 * mm
TEXT_COLUMNS = 100


def _numbered(footer: str, contents: Contents) -> type[Canvas]:
    """A canvas class that holds its pages until the end, to write "page x of y" on each (and
    the table of contents, whose page numbers are known only then)."""

    class Numbered(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()  # type: ignore[attr-defined]  # reportlab's own page reset

        def save(self) -> None:
            total = len(self._pages)
            for n, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.saveState()
                self.setFont(SANS, 7)
                self.setFillColor(colors.grey)
                self.drawString(MARGIN, MARGIN, footer)
                self.drawRightString(A4[0] - MARGIN, MARGIN, f"page {n} of {total}")
                self.setFillColor(colors.black)
                if n == contents.page:
                    contents.draw(self)
                self.restoreState()
                super().showPage()
            super().save()

    return Numbered


def author(report: Report) -> str:
    """The PDF's Author: the protected person as the case settings name them, else guardmail."""
    return report.protected[0][1] if report.protected else f"guardmail {report.version}"


class _Doc(BaseDocTemplate):
    def __init__(
        self, buf: io.BytesIO, report: Report, progress: Progress | None, contents: Contents
    ) -> None:
        offenders = ", ".join(report.offenders) or "-"
        super().__init__(
            buf,
            pagesize=A4,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN + 4 * mm,
            title=f"Evidence report: {report.protected_name}, {report.period}",
            author=author(report),
            subject=f"Harassment evidence: {len(report.rows)} items from {offenders}",
            keywords=["evidence", "harassment", "guardmail"],
            creator=f"guardmail {report.version}",
            producer=f"guardmail {report.version} (ReportLab)",
            invariant=1,
        )
        self._report = report
        self._progress = progress
        self._contents = contents
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="body")
        self.addPageTemplates([PageTemplate(id="page", frames=[frame])])

    def beforeDocument(self) -> None:
        # invariant=1 keeps the file reproducible but stamps it 2000-01-01: give it the
        # report's own time instead (reportlab reads these when it writes the Info dictionary).
        stamp = self.canv._doc._timeStamp  # type: ignore[attr-defined]
        made = self._report.generated_at
        stamp.t = made.timestamp()
        stamp.YMDhms = (made.year, made.month, made.day, made.hour, made.minute, made.second)
        stamp.dhh = stamp.dmm = 0

    def afterFlowable(self, flowable: Flowable) -> None:
        if isinstance(flowable, Slot):
            self._contents.page = self.page
        if not isinstance(flowable, Mark):
            return
        if flowable.section:
            key = f"s{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(flowable.section, key, level=flowable.level)
            self._contents.add(flowable.level, flowable.section, self.page)
        if flowable.item and self._progress is not None:
            self._progress(flowable.item, len(self._report.rows))


def _first_page(r: Report, s: Styles) -> Iterator[Flowable]:
    yield Mark(section="Summary")
    yield Paragraph("Evidence report", s.title)
    who = [(label, esc(value)) for label, value in r.protected] or [
        ("Protected person", esc(r.protected_name))
    ]
    channels = ", ".join(f"{c}: {n}" for c, n in r.per_channel)
    after = sum(o.after_warning for o in r.per_offender)
    counts = f"<b>{len(r.rows)}</b>" + (f" ({esc(channels)})" if channels else "")
    if r.warnings:
        counts += f"; <b>{after}</b> sent after the warning"
    warned = "; ".join(
        f"{esc(when(w.sent) + ' UTC' if w.sent else w.warning.sent_at)} to {esc(w.warning.to)} "
        f"({esc(w.warning.offender)})"
        for w in r.warnings
    )
    offenders = "<br/>".join(
        f"<b>{esc(o.offender)}</b>: {o.items} items"
        + (f", {o.after_warning} after the warning" if r.warnings else "")
        + (f"<br/>\u00a0\u00a0wrote from: {esc(', '.join(o.addresses))}" if o.addresses else "")
        for o in r.per_offender
    )
    facts = [
        *who,
        ("Offenders", offenders or "-"),
        ("Period", esc(r.period)),
        ("First and last received (UTC)", f"{when(r.first)} \u2013 {when(r.last)}"),
        ("Items", counts),
        ("Warning sent", warned or "none"),
        ("Case notes", str(len(r.notes)) if r.notes else "none"),
        ("Journal entries", f"seq {r.journal_first} to {r.journal_last}"),
        ("Generated (UTC)", f"{when(r.generated_at)} by guardmail {esc(r.version)}"),
    ]
    yield facts_table(facts, s, 45 * mm)
    yield Spacer(1, 3 * mm)
    yield Paragraph("What this bundle holds", s.h2)
    holds = (
        "Each blocked message exactly as it arrived (items/, .eml for e-mail, .xml for instant "
        "messages), the warning exactly as sent, the journal entries covering them "
        "(journal.jsonl; entries about anyone else appear only as their hashes), manifest.json, "
        "this report (report.pdf, report.html), README.txt and SHA256SUMS. In abuse/: for each "
        "offender and the provider they wrote from, an abuse report to that provider's abuse "
        "desk (plain text, and for e-mail an RFC 5965 report with the messages attached), "
        "ready for the protected person to send."
    )
    if not r.bodies:
        holds += " This is a summary copy: the report leaves the messages' text out."
    yield Paragraph(holds, s.body)
    yield Paragraph("How to check it", s.h2)
    yield Paragraph(
        "In the unzipped folder run <font name='GMMono'>sha256sum -c SHA256SUMS</font>: every "
        "line must end in OK. The journal's hash chain and each item's SHA-256 can be checked "
        "with the steps under \u201cHow to verify\u201d below and in README.txt, or with "
        "<font name='GMMono'>guardmail evidence verify FOLDER</font>.",
        s.body,
    )


def _timeline(r: Report, s: Styles, chart: bytes, width: float) -> Iterator[Flowable]:
    yield Mark(section="Timeline")
    yield Paragraph("Timeline: items per day per offender", s.h1)
    yield Image(io.BytesIO(chart), width=width, height=width * 0.4)
    events = timeline(r)
    if not events:
        return
    head = ["Day (UTC)", "Offender", "What"]
    data: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", s.cell) for h in head]]
    warning_rows: list[int] = []
    for e in events:
        if e.what == "warning":
            what = f"\u25b6 {e.text}"
            warning_rows.append(len(data))
        elif e.what in ("note", "report", "custody"):
            what = e.text
        else:
            what = f"{e.count} item{'s' if e.count != 1 else ''}"
            if e.after_warning:
                what += f" (\u25b2 {e.after_warning} after the warning)"
        data.append(
            [e.day.isoformat(), Paragraph(esc(e.offender), s.cell), Paragraph(esc(what), s.cell)]
        )
    table = grid(data, [60.0, 120.0, None], repeat=1)
    for n in warning_rows:
        table.setStyle([("BACKGROUND", (0, n), (-1, n), colors.HexColor("#ffe8c0"))])
    yield table
    warned = {w.warning.offender.casefold() for w in r.warnings}
    yield Spacer(1, 2 * mm)
    for o in r.per_offender:
        if o.offender.casefold() in warned:
            before = o.items - o.after_warning
            yield Paragraph(
                f"<b>{esc(o.offender)}</b>: {before} item{'s' if before != 1 else ''} sent "
                f"before the warning, <b>{o.after_warning}</b> after it (by each item's Date:, "
                "bounded by when it was received).",
                s.body,
            )


def _warnings(r: Report, s: Styles) -> Iterator[Flowable]:
    for w in r.warnings:
        facts = facts_table(
            [
                ("Sent", esc(f"{when(w.sent)} UTC" if w.sent else w.warning.sent_at)),
                ("To", esc(w.warning.to)),
                ("Message-ID", esc(w.warning.message_id)),
                ("Subject", esc(w.subject)),
                ("File", esc(w.warning.file)),
                ("SHA-256", f'<font name="GMMono">{w.warning.sha256}</font>'),
            ],
            s,
            30 * mm,
        )
        # On one page where it fits: the warning is read as one piece.
        lines = sum(1 + len(line) // TEXT_COLUMNS for line in w.text.splitlines())
        yield CondPageBreak(min(170 + 9.5 * lines, 700))
        yield Mark(section=f"Warning to {clean(w.warning.offender)}")
        yield Paragraph(f"Warning sent to {esc(w.warning.offender)}", s.h1)
        yield facts
        yield Spacer(1, 2 * mm)
        yield Preformatted(clean(w.text), s.text, maxLineLength=TEXT_COLUMNS)


def render_pdf(report: Report, *, chart_png: bytes, progress: Progress | None = None) -> bytes:
    register_fonts()
    s = Styles()
    buf = io.BytesIO()
    width = A4[0] - 2 * MARGIN
    story: list[Flowable] = []
    story += _timeline(report, s, chart_png, width)
    story += _warnings(report, s)
    story += case_journal(report, s)
    story += [Mark(section="How to verify"), Paragraph("How to verify this bundle", s.h1)]
    story.append(Preformatted(report.verification, s.pre, maxLineLength=TEXT_COLUMNS))
    story += items_story(report, s)
    story += certification(report, s, report.journal_last_hash)
    first = list(_first_page(report, s))
    sections = sum(1 for f in [*first, *story] if isinstance(f, Mark) and f.section)
    contents = Contents(lines=capacity(sections))
    head = [PageBreak(), Paragraph("Contents", s.h1), Slot(contents)]
    doc = _Doc(buf, report, progress, contents)
    footer = (
        f"guardmail evidence report \u2014 {clean(report.protected_name)} \u2014 "
        f"generated {when(report.generated_at)} UTC"
    )
    doc.build([*first, *head, *story], canvasmaker=_numbered(footer, contents))
    return buf.getvalue()
