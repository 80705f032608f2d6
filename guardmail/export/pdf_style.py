"""The report PDF's fonts, styles and small flowables, shared by its cover and its item pages.

Contracts:
- Every text from a message goes through ``esc`` before it reaches a Paragraph (reportlab's
  mini-markup would read ``<`` and ``&`` in a hostile subject as tags); ``Facts`` and
  Preformatted read no markup and get text with control characters removed.
- Nothing is cut: ``wrap_text`` breaks at spaces and, inside a word too long for the line (a
  long address, a hash), between characters.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

from guardmail.export.details import clean

SANS, BOLD, MONO = "GMSans", "GMSans-Bold", "GMMono"
MAX_WRAPPED = 4000  # characters of one text laid out (values are bounded before this)
MAX_FACT = 600  # characters of one fact shown; the item file holds the rest


def register_fonts() -> None:
    if SANS in pdfmetrics.getRegisteredFontNames():
        return
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(SANS, str(ttf / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(ttf / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFont(TTFont(MONO, str(ttf / "DejaVuSansMono.ttf")))
    pdfmetrics.registerFontFamily(SANS, normal=SANS, bold=BOLD, italic=SANS, boldItalic=BOLD)


def esc(value: object) -> str:
    return escape(clean(str(value)))


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


class Styles:
    def __init__(self) -> None:
        self.title = ParagraphStyle("title", fontName=BOLD, fontSize=20, leading=26, spaceAfter=8)
        self.h1 = ParagraphStyle(
            "h1", fontName=BOLD, fontSize=14, leading=18, spaceBefore=10, spaceAfter=6
        )
        self.h2 = ParagraphStyle(
            "h2", fontName=BOLD, fontSize=10, leading=13, spaceBefore=6, spaceAfter=3
        )
        self.body = ParagraphStyle("body", fontName=SANS, fontSize=8.5, leading=11, spaceAfter=4)
        self.cell = ParagraphStyle("cell", fontName=SANS, fontSize=7, leading=8.5)
        self.flag = ParagraphStyle(
            "flag", fontName=BOLD, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#a00000")
        )
        self.mono = ParagraphStyle("mono", fontName=MONO, fontSize=6.5, leading=8)
        self.pre = ParagraphStyle("pre", fontName=MONO, fontSize=7.5, leading=9.5)
        self.text = ParagraphStyle(
            "text",
            fontName=MONO,
            fontSize=7.5,
            leading=9.5,
            backColor=colors.HexColor("#f4f4f4"),
            borderPadding=3,
            spaceBefore=4,
            spaceAfter=6,
        )


class Mark(Flowable):
    """Zero-size marker: where a section starts (outline entry) or an item's detail ends."""

    def __init__(self, *, section: str = "", item: int = 0, level: int = 0) -> None:
        super().__init__()
        self.section = section
        self.item = item
        self.level = level
        self.width = self.height = 0

    def draw(self) -> None:
        pass


def wrap_text(text: str, font: str, size: float, width: float) -> list[str]:
    """``text`` in lines no wider than ``width``; words too long for a line are broken."""
    lines: list[str] = []
    for para in clean(text[:MAX_WRAPPED]).split("\n"):
        line = ""
        for word in para.split(" "):
            candidate = f"{line} {word}" if line else word
            if pdfmetrics.stringWidth(candidate, font, size) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while word and pdfmetrics.stringWidth(word, font, size) > width:
                n = _fitting(word, font, size, width)
                lines.append(word[:n])
                word = word[n:]
            line = word
        lines.append(line)
    return lines


def _fitting(word: str, font: str, size: float, width: float) -> int:
    """How many leading characters of ``word`` fit ``width`` (at least one)."""
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pdfmetrics.stringWidth(word[:mid], font, size) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Facts(Flowable):
    """Key/value lines drawn straight on the canvas, values wrapped under their column.

    Much faster than a Table of Paragraphs for 20,000 items, and nothing is parsed as markup.
    """

    SIZE, LINE, KEY = 7.0, 8.8, 62.0

    def __init__(self, rows: list[tuple[str, str, str]], *, red: frozenset[str] = frozenset()):
        super().__init__()
        self.rows = [(k, _bounded(v), f) for k, v, f in rows]  # (key, value, font of the value)
        self.red = red  # keys whose value is drawn in red (flags)
        self._laid: list[tuple[str, list[str], str]] = []

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        self.width = availWidth
        room = availWidth - self.KEY
        self._laid = [(k, wrap_text(v, f, self.SIZE, room), f) for k, v, f in self.rows]
        self.height = 2 + self.LINE * sum(len(lines) for _, lines, _ in self._laid)
        return self.width, self.height

    def split(self, availWidth: float, availHeight: float) -> list[Flowable]:
        """Whole rows on this page and the rest on the next (an offender's long To: list)."""
        self.wrap(availWidth, availHeight)
        used, n = 2.0, 0
        for _, lines, _ in self._laid:
            if used + self.LINE * len(lines) > availHeight:
                break
            used += self.LINE * len(lines)
            n += 1
        if n == 0 or n == len(self.rows):
            return []
        return [Facts(self.rows[:n], red=self.red), Facts(self.rows[n:], red=self.red)]

    def draw(self) -> None:
        c = self.canv
        y = self.height - self.LINE
        for key, lines, font in self._laid:
            c.setFont(BOLD, self.SIZE)
            c.setFillColor(colors.black)
            c.drawString(0, y, key)
            if key in self.red:
                c.setFillColor(colors.HexColor("#a00000"))
            c.setFont(BOLD if key in self.red else font, self.SIZE)
            for line in lines:
                c.drawString(self.KEY, y, line)
                y -= self.LINE
        c.setFillColor(colors.black)


def _bounded(value: str) -> str:
    if len(value) <= MAX_FACT:
        return value
    return f"{value[:MAX_FACT]} [{len(value) - MAX_FACT:,} more characters: see the item file]"


def grid(data: list[list[Any]], widths: list[Any], *, repeat: int) -> Table:
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


def facts_table(rows: list[tuple[str, str]], s: Styles, key_width: float) -> Table:
    """A two-column table of (plain key, marked-up value) Paragraphs, for the cover."""
    data = [[Paragraph(esc(k), s.cell), Paragraph(v, s.cell)] for k, v in rows]
    table = Table(data, colWidths=[key_width, None], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (-1, -1), colors.white),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eeeeee")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#bbbbbb")),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table
