"""report.pdf: the printable report (reportlab platypus), summary first, per-item detail after.

Contracts:
- Every text from a message goes through ``_esc`` before it reaches a Paragraph: reportlab's
  mini-markup would otherwise read ``<`` and ``&`` in a hostile subject as tags. Headers and the
  warning's text go to Preformatted, which reads no markup, with control characters removed.
- Fonts are DejaVu Sans and DejaVu Sans Mono, embedded (as subsets) from matplotlib's data:
  names and subjects in any European script print correctly and ``pdftotext`` reads them back.
  Characters DejaVu lacks (some emoji, CJK) show as an empty box; the item files are the
  evidence, not their rendering here.
- The order is fixed so that a 20,000-item report stays usable: cover (who, what period, how
  many, when made, by what), timeline, per-offender counts, the warning, how to verify; then
  the table of every item; then each item's facts and full headers.
- ``progress(done, total)``, if given, is called as item details are laid out.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
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
    Table,
    TableStyle,
)

from guardmail.export.details import clean
from guardmail.export.summary import Report, Row

Progress = Callable[[int, int], None]

SANS, BOLD, MONO = "GMSans", "GMSans-Bold", "GMMono"
MARGIN = 15 * mm
TABLE_CHUNK = 60  # rows per Table: platypus splits long tables in quadratic time
TITLE_MAX = 90
SENDER_MAX = 48
ITEM_MIN_SPACE = 90  # points: an item's heading, facts and a few header lines
HEADER_COLUMNS = 128  # DejaVu Sans Mono at 6.5 pt: 0.602 em a character, 510 pt a line


def _register_fonts() -> None:
    if SANS in pdfmetrics.getRegisteredFontNames():
        return
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(SANS, str(ttf / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(ttf / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFont(TTFont(MONO, str(ttf / "DejaVuSansMono.ttf")))
    pdfmetrics.registerFontFamily(SANS, normal=SANS, bold=BOLD, italic=SANS, boldItalic=BOLD)


def _esc(value: object) -> str:
    return escape(clean(str(value)))


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


class _Styles:
    def __init__(self) -> None:
        self.title = ParagraphStyle("title", fontName=BOLD, fontSize=20, leading=26, spaceAfter=8)
        self.h1 = ParagraphStyle(
            "h1", fontName=BOLD, fontSize=14, leading=18, spaceBefore=10, spaceAfter=6
        )
        self.cell = ParagraphStyle("cell", fontName=SANS, fontSize=7, leading=8.5)
        self.mono = ParagraphStyle("mono", fontName=MONO, fontSize=6.5, leading=8)
        self.pre = ParagraphStyle("pre", fontName=MONO, fontSize=7.5, leading=9.5)


class _Mark(Flowable):
    """Zero-size marker: where a section starts (outline entry) or an item's detail ends."""

    def __init__(self, *, section: str = "", item: int = 0) -> None:
        super().__init__()
        self.section = section
        self.item = item
        self.width = self.height = 0

    def draw(self) -> None:
        pass


class _Doc(BaseDocTemplate):
    def __init__(self, buf: io.BytesIO, report: Report, progress: Progress | None) -> None:
        super().__init__(
            buf,
            pagesize=A4,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN + 4 * mm,
            title=f"Evidence report: {report.tenant}, {report.period}",
            author=f"guardmail {report.version}",
            subject=f"{len(report.rows)} items from {', '.join(report.offenders) or '-'}",
            creator=f"guardmail {report.version}",
            invariant=1,
        )
        self._report = report
        self._progress = progress
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="body")
        self.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=self._footer)])

    def _footer(self, canvas: Canvas, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(SANS, 7)
        canvas.setFillColor(colors.grey)
        text = (
            f"guardmail evidence report \u2014 {self._report.tenant} \u2014 "
            f"generated {_when(self._report.generated_at)} UTC"
        )
        canvas.drawString(MARGIN, MARGIN, text)
        canvas.drawRightString(A4[0] - MARGIN, MARGIN, f"page {canvas.getPageNumber()}")
        canvas.restoreState()

    def afterFlowable(self, flowable: Flowable) -> None:
        if not isinstance(flowable, _Mark):
            return
        if flowable.section:
            key = f"s{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(flowable.section, key, level=0)
        if flowable.item and self._progress is not None:
            self._progress(flowable.item, len(self._report.rows))


def _facts(rows: list[tuple[str, str]], s: _Styles, key_width: float) -> Table:
    data = [[Paragraph(_esc(k), s.cell), Paragraph(v, s.cell)] for k, v in rows]
    table = Table(data, colWidths=[key_width, None], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eeeeee")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table


def _cover(r: Report, s: _Styles, chart: bytes, width: float) -> Iterator[Flowable]:
    yield _Mark(section="Summary")
    yield Paragraph("Evidence report", s.title)
    channels = ", ".join(f"{c}: {n}" for c, n in r.per_channel)
    warned = "; ".join(f"{_esc(w.warning.sent_at)} to {_esc(w.warning.to)}" for w in r.warnings)
    facts = [
        ("Protected person (tenant)", _esc(r.tenant)),
        ("Offenders", _esc(", ".join(r.offenders) or "-")),
        ("Period", _esc(r.period)),
        ("First and last item (UTC)", f"{_when(r.first)} \u2013 {_when(r.last)}"),
        ("Items", f"<b>{len(r.rows)}</b>" + (f" ({_esc(channels)})" if channels else "")),
        ("Warning sent", warned or "none"),
        ("Journal entries", f"seq {r.journal_first} to {r.journal_last}"),
        ("Generated (UTC)", f"{_when(r.generated_at)} by guardmail {_esc(r.version)}"),
    ]
    yield _facts(facts, s, 45 * mm)
    yield Spacer(1, 4 * mm)
    yield Paragraph("Timeline: items per day per offender", s.h1)
    yield Image(io.BytesIO(chart), width=width, height=width * 0.4)
    yield Paragraph("Per offender", s.h1)
    head = ["Offender", "Items", "First (UTC)", "Last (UTC)", "Channels"]
    data: list[list[Any]] = [[Paragraph(f"<b>{h}</b>", s.cell) for h in head]]
    for o in r.per_offender:
        data.append(
            [
                Paragraph(_esc(o.offender), s.cell),
                str(o.items),
                _when(o.first),
                _when(o.last),
                Paragraph(_esc(o.channels), s.cell),
            ]
        )
    yield _grid(data, [55 * mm, 15 * mm, 32 * mm, 32 * mm, None], repeat=1)
    for w in r.warnings:
        yield _Mark(section=f"Warning to {clean(w.warning.offender)}")
        yield Paragraph(f"Warning sent to {_esc(w.warning.offender)}", s.h1)
        yield _facts(
            [
                ("Sent", _esc(w.warning.sent_at)),
                ("To", _esc(w.warning.to)),
                ("Message-ID", _esc(w.warning.message_id)),
                ("Subject", _esc(w.subject)),
                ("File", _esc(w.warning.file)),
                ("SHA-256", f'<font name="{MONO}">{w.warning.sha256}</font>'),
            ],
            s,
            30 * mm,
        )
        yield Spacer(1, 2 * mm)
        yield Preformatted(clean(w.text), s.pre, maxLineLength=100)
    yield _Mark(section="How to verify")
    yield Paragraph("How to verify this bundle", s.h1)
    yield Preformatted(r.verification, s.pre, maxLineLength=100)


def _grid(data: list[list[Any]], widths: list[Any], *, repeat: int) -> Table:
    table = Table(data, colWidths=widths, repeatRows=repeat, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), SANS, 7),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 2),
                ("RIGHTPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def _item_table(rows: tuple[Row, ...], s: _Styles) -> Iterator[Flowable]:
    yield PageBreak()
    yield _Mark(section="Items")
    yield Paragraph(f"Items ({len(rows)})", s.h1)
    head = ["#", "Received (UTC)", "Via", "From", "Subject or first words", "SHA-256"]
    header = [Paragraph(f"<b>{h}</b>", s.cell) for h in head]
    widths = [24.0, 50.0, 26.0, 118.0, 160.0, 132.0]  # 510 pt: the frame of an A4 page
    # The hash on two lines of 32 hex digits: legible at print size, and the table stays narrow.
    hash_style = TableStyle([("FONT", (5, 1), (5, -1), MONO, 6.3)])
    for start in range(0, len(rows), TABLE_CHUNK):
        data: list[list[Any]] = [header]
        for row in rows[start : start + TABLE_CHUNK]:
            item = row.item
            data.append(
                [
                    str(item.index),
                    f"{item.received_at:%Y-%m-%d}\n{item.received_at:%H:%M:%S}",
                    item.channel,
                    _lines(row.sender, SENDER_MAX, widths[3]),
                    _lines(row.title, TITLE_MAX, widths[4]),
                    f"{item.sha256[:32]}\n{item.sha256[32:]}",
                ]
            )
        table = _grid(data, widths, repeat=1)
        table.setStyle(hash_style)
        yield table


def _lines(text: str, limit: int, width: float) -> str:
    """``text`` shortened and wrapped to ``width`` as plain cell lines (no markup to parse).

    A Paragraph per cell would cost a markup parse and a line-breaking pass; for 20,000 rows
    this pre-wrapped plain text is several times faster and looks the same.
    """
    return "\n".join(simpleSplit(clean(_short(text, limit)), SANS, 7, width - 4))


class _ItemHead(Flowable):
    """An item's heading and facts: fixed lines of (font, text) runs drawn straight on the canvas.

    Nothing here is parsed as markup and nothing wraps: a run that would pass the right margin
    is cut with an ellipsis (the full value is in manifest.json). For 20,000 items this is
    several times faster than Paragraphs, and the block cannot be split from its heading.
    """

    HEAD, LINE, SIZE = 14.0, 9.0, 7.0

    def __init__(self, title: str, lines: list[list[tuple[str, str]]]) -> None:
        super().__init__()
        self.title = title
        self.lines = lines

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        self.width = availWidth
        self.height = 6 + self.HEAD + self.LINE * len(self.lines)
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        y = self.height - self.HEAD - 2
        c.setFont(BOLD, 10)
        c.drawString(0, y, _fit(self.title, BOLD, 10, self.width))
        for runs in self.lines:
            y -= self.LINE
            x = 0.0
            for font, text in runs:
                shown = _fit(text, font, self.SIZE, self.width - x)
                c.setFont(font, self.SIZE)
                c.drawString(x, y, shown)
                x += pdfmetrics.stringWidth(shown, font, self.SIZE)
                if shown != text:
                    break


def _fit(text: str, font: str, size: float, width: float) -> str:
    if pdfmetrics.stringWidth(text, font, size) <= width:
        return text
    while text and pdfmetrics.stringWidth(text + "\u2026", font, size) > width:
        text = text[: max(0, min(len(text) - 1, int(len(text) * 0.9)))]
    return text + "\u2026" if text else ""


def _item_detail(row: Row, s: _Styles) -> Iterator[Flowable]:
    i = row.item
    done = f": {clean(i.done)}" if i.done else ""
    title = f"Item {i.index} \u00b7 journal seq {i.seq} \u00b7 {_when(i.received_at)} UTC"
    yield CondPageBreak(ITEM_MIN_SPACE)  # no heading alone at the foot of a page
    yield _ItemHead(
        title,
        [
            [(BOLD, "File "), (SANS, clean(i.file))],
            [(BOLD, "SHA-256 "), (MONO, i.sha256), (SANS, f"  ({i.size} bytes)")],
            [
                (BOLD, "Channel "),
                (SANS, f"{clean(i.channel)} \u00b7 "),
                (BOLD, "account "),
                (SANS, f"{clean(i.account)} \u00b7 "),
                (BOLD, "source "),
                (SANS, clean(i.source_ref)),
            ],
            [
                (BOLD, "Offender "),
                (SANS, f"{clean(i.offender)} \u00b7 "),
                (BOLD, "matched "),
                (SANS, f"{clean(i.rule)} in {clean(i.header)} \u00b7 "),
                (BOLD, "action "),
                (SANS, f"{clean(i.action)}{done}"),
            ],
        ],
    )
    if row.headers:
        # Monospace and wrapped by character count: exact for a fixed-width font, and linear
        # time, where Paragraph's word splitting goes quadratic on long tokens (DKIM, base64).
        text = "\n".join(f"{clean(n)}: {' '.join(v.split())}" for n, v in row.headers)
        yield Preformatted(text, s.mono, maxLineLength=HEADER_COLUMNS, newLineChars="    ")
    yield _Mark(item=i.index)


def render_pdf(report: Report, *, chart_png: bytes, progress: Progress | None = None) -> bytes:
    _register_fonts()
    s = _Styles()
    buf = io.BytesIO()
    doc = _Doc(buf, report, progress)
    story: list[Flowable] = [*_cover(report, s, chart_png, doc.width)]
    if report.rows:
        story += _item_table(report.rows, s)
        story += [PageBreak(), _Mark(section="Item details"), Paragraph("Item details", s.h1)]
        for row in report.rows:
            story += _item_detail(row, s)
    doc.build(story)
    return buf.getvalue()
