"""The report PDF's table of contents, laid out in one pass.

reportlab's TableOfContents needs the whole document laid out twice (``multiBuild``), which
doubles the time of a report of thousands of items. The entries are known before layout (one per
section ``Mark`` in the story), so their space is reserved instead (``Slot``, a fixed-height
flowable) and the entries are drawn into it when the document is saved, once every section's
page is known (``Contents.draw``, called by the numbering canvas for the slot's page).

Contract: ``Contents.add`` is called for each section as it is laid out (the document's
``afterFlowable``), in story order. The slot is one page at most (``MAX_LINES``): with more
sections than that (many offenders), the per-offender entries are left out first, then the last
line says how many more there are; the PDF's bookmarks always have every one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable

from guardmail.export.pdf_style import BOLD, SANS

LEADING = 14.0  # points a line
INDENT = 14.0  # points of indent for each level below the first
MAX_TITLE = 90  # characters of an entry's title (offender names come from the config)
MAX_LINES = 48  # lines that fit on a page below the "Contents" heading


def capacity(sections: int) -> int:
    """The lines to reserve for ``sections`` entries."""
    return min(sections, MAX_LINES)


@dataclass(slots=True)
class Contents:
    """The entries (level, title, page) and, once laid out, where the slot is."""

    lines: int
    entries: list[tuple[int, str, int]] = field(default_factory=list)
    page: int = 0  # the slot's page (1-based), 0 until laid out; set by the document
    x: float = 0.0
    top: float = 0.0
    width: float = 0.0

    def add(self, level: int, title: str, page: int) -> None:
        self.entries.append((level, title, page))

    def shown(self) -> list[tuple[int, str, int]]:
        """The entries that fit in the slot's ``lines``."""
        entries = self.entries
        if len(entries) > self.lines:
            entries = [e for e in entries if e[0] == 0]
        if len(entries) > self.lines:
            more = len(entries) - self.lines + 1
            entries = entries[: self.lines - 1]
            entries.append((0, f"({more} more sections: see the PDF's bookmarks)", 0))
        return entries

    def draw(self, canvas: Canvas) -> None:
        """Draw the entries into the slot (on the slot's page, at save time)."""
        y = self.top - LEADING + 3
        for level, title, page in self.shown():
            font, size = (BOLD, 9.0) if level == 0 else (SANS, 8.5)
            text = title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "\u2026"
            left = self.x + INDENT * level
            number = str(page) if page else ""
            canvas.setFont(font, size)
            canvas.drawString(left, y, text)
            canvas.drawRightString(self.x + self.width, y, number)
            start = left + pdfmetrics.stringWidth(text, font, size) + 6
            end = self.x + self.width - pdfmetrics.stringWidth(number, font, size) - 6
            dot = pdfmetrics.stringWidth(". ", SANS, 8.0)
            count = int((end - start) // dot) if end > start else 0
            if count > 0:
                canvas.setFont(SANS, 8.0)
                canvas.drawRightString(end, y, ". " * count)
            y -= LEADING


class Slot(Flowable):
    """Empty space for ``contents.lines`` lines; records where it was drawn."""

    def __init__(self, contents: Contents) -> None:
        super().__init__()
        self.contents = contents
        self.height = contents.lines * LEADING + 4

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        self.width = availWidth
        return availWidth, self.height

    def draw(self) -> None:
        x, y = self.canv.absolutePosition(0, 0)  # the page: set by the document (afterFlowable)
        self.contents.x, self.contents.top, self.contents.width = x, y + self.height, self.width
