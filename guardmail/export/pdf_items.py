"""The report PDF's item pages: the table of every item, each item in full, the headers appendix.

Contracts:
- An item shows both times: when it was received (guardmail's clock, UTC) and when its sender
  says it was sent (``Date:``, converted to UTC, and as written). Look-alike letters and
  "sent after the warning" are said in words, in red, on the item and in the table.
- The message's text is printed in a fixed-width font, wrapped by character count (linear time,
  where Paragraph's word splitting goes quadratic on long tokens); it reads no markup.
- ``progress(done, total)`` is called (by the document) as item details are laid out.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from reportlab.lib.utils import ImageReader
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    Preformatted,
    Spacer,
    Table,
    TableStyle,
)

from guardmail.export.content import Attachment
from guardmail.export.details import clean
from guardmail.export.pdf_style import MONO, SANS, Facts, Mark, Styles, esc, grid, when, wrap_text
from guardmail.export.summary import Report, Row

TABLE_CHUNK = 60  # rows per Table: platypus splits long tables in quadratic time
TITLE_MAX = 200  # characters of a subject in the table (the item's own page has all of it)
FROM_MAX = 300  # characters of a sender in the table
SECTION_MIN_SPACE = 200  # points: a section's heading and its first lines
ITEM_MIN_SPACE = 110  # points: an item's heading, facts and a few lines of text
HEADER_COLUMNS = 128  # DejaVu Sans Mono at 6.5 pt: 0.602 em a character, 510 pt a line
TEXT_COLUMNS = 112  # DejaVu Sans Mono at 7.5 pt in the 510 pt frame, less the text's padding
THUMB = 90.0  # points a side of an image's thumbnail: four fit in a row


def item_table(rows: tuple[Row, ...], s: Styles) -> Iterator[Flowable]:
    yield CondPageBreak(SECTION_MIN_SPACE)  # a new page only if little is left of this one
    yield Mark(section="Items")
    yield Paragraph(f"Items ({len(rows)})", s.h1)
    yield Paragraph(
        "Received: when guardmail took the item (UTC). Sent: the time in the item's Date: "
        "field, converted to UTC (written by the sender's software). "
        "\u25b2 marks an item sent after the warning (judged by Date:, bounded by Received).",
        s.body,
    )
    head = ["#", "Received (UTC)", "Sent (UTC)", "Via", "From", "Subject or first words", "SHA-256"]
    header = [Paragraph(f"<b>{h}</b>", s.cell) for h in head]
    widths = [24.0, 46.0, 46.0, 24.0, 106.0, 132.0, 132.0]  # 510 pt: the frame of an A4 page
    # The hash on two lines of 32 hex digits: legible at print size, and the table stays narrow.
    hash_style = TableStyle([("FONT", (6, 1), (6, -1), MONO, 6.3)])
    for start in range(0, len(rows), TABLE_CHUNK):
        data: list[list[Any]] = [header]
        for row in rows[start : start + TABLE_CHUNK]:
            item, sent = row.item, row.content.sent
            title = _cell(_title(row), widths[5])
            data.append(
                [
                    f"{item.index}\n\u25b2" if row.after_warning else str(item.index),
                    f"{item.received_at:%Y-%m-%d}\n{item.received_at:%H:%M:%S}",
                    f"{sent:%Y-%m-%d}\n{sent:%H:%M:%S}" if sent else "-",
                    item.channel + _side(row),
                    _cell(_short(row.content.sender or row.sender, FROM_MAX), widths[4]),
                    title,
                    f"{item.sha256[:32]}\n{item.sha256[32:]}",
                ]
            )
        table = grid(data, widths, repeat=1)
        table.setStyle(hash_style)
        yield table


def _side(row: Row) -> str:
    """The item table's direction marker: the person's own message, or a room's message."""
    if row.item.direction == "outgoing":
        return "\nsent"
    return "\nroom" if row.item.room else ""


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _title(row: Row) -> str:
    title = _short(row.title, TITLE_MAX)
    marks = ["look-alike sender"] if any(f.startswith("looks like") for f in row.flags) else []
    marks += ["after the warning"] if row.after_warning else []
    marks += ["imported"] if row.item.imported else []
    return f"{title}\n[{', '.join(marks)}]" if marks else title


def _cell(text: str, width: float) -> str:
    """Plain cell lines wrapped to ``width`` (no markup parse: 20,000 rows stay quick)."""
    return "\n".join(wrap_text(text, SANS, 7, width - 4))


def item_detail(row: Row, s: Styles, *, bodies: bool) -> Iterator[Flowable]:
    i, c = row.item, row.content
    yield CondPageBreak(ITEM_MIN_SPACE)  # no heading alone at the foot of a page
    head = f"Item {i.index} \u00b7 {i.channel} \u00b7 received {when(i.received_at)} UTC"
    yield Paragraph(esc(head), s.h2)
    sent = f"{when(c.sent)} UTC" if c.sent else "-"
    if c.date_header:
        sent += f"  (Date: {c.date_header})"
    facts: list[tuple[str, str, str]] = [
        ("Sent", sent, SANS),
        ("From", c.sender or row.sender or "-", SANS),
        ("To", c.to or "-", SANS),
    ]
    if c.cc:
        facts.append(("Cc", c.cc, SANS))
    if i.channel != "xmpp":
        facts.append(("Subject", c.subject or i.subject or "-", SANS))
    facts += [("\u26a0 Flag", flag, SANS) for flag in row.flags]
    done = f": {i.done}" if i.done else ""
    facts += [
        ("Offender", f"{i.offender}, matched {i.rule} in {i.header}", SANS),
        ("Action", f"{i.action}{done}", SANS),
        ("Account", f"{i.account} \u00b7 source {i.source_ref}", SANS),
        ("File", i.file, SANS),
        ("SHA-256", f"{i.sha256}  ({i.size:,} bytes)", MONO),
        ("Journal", f"entry seq {i.seq}", SANS),
    ]
    yield Facts(facts, red=frozenset({"\u26a0 Flag"}))
    if bodies:
        yield from _text(row, s)
    yield Mark(item=i.index)


def _text(row: Row, s: Styles) -> Iterator[Flowable]:
    c = row.content
    if row.item.channel == "xmpp":
        who = c.sender or row.sender or "?"
        stamp = when(c.sent or row.item.received_at)
        text = f"[{stamp} UTC] {who}:\n{c.text or '(no text)'}"
    else:
        text = c.text or "(no readable text)"
    yield Preformatted(text, s.text, maxLineLength=TEXT_COLUMNS, newLineChars="")
    if c.attachments:
        data: list[list[Any]] = [
            [Paragraph(f"<b>{h}</b>", s.cell) for h in ("Attachment", "Type", "Bytes", "SHA-256")]
        ]
        for a in c.attachments:
            data.append([_cell(a.name, 130), _cell(a.content_type, 80), f"{a.size:,}", a.sha256])
        table = grid(data, [130.0, 80.0, 45.0, 255.0], repeat=1)
        table.setStyle(TableStyle([("FONT", (3, 1), (3, -1), MONO, 6.3)]))
        yield table
        yield Spacer(1, 4)
        yield from _pictures(c.attachments, s, row.item.index)
    for note in c.notes:
        yield Paragraph(esc(f"Note: {note}."), s.cell)


def _pictures(attachments: tuple[Attachment, ...], s: Styles, index: int) -> Iterator[Flowable]:
    """The images' thumbnails (made by guardmail.export.thumbs) in a row, each captioned."""
    shown = [a for a in attachments if a.thumbnail]
    if not shown:
        return
    cells: list[Any] = []
    for a in shown:
        width, height = _fit(*ImageReader(io.BytesIO(a.thumbnail)).getSize())
        picture = Image(io.BytesIO(a.thumbnail), width=width, height=height)
        caption = Paragraph(esc(_short(a.name, 60)), s.cell)
        cells.append([picture, caption])
    table = Table([cells], colWidths=[THUMB + 12] * len(cells), hAlign="LEFT")
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    yield KeepTogether(
        [
            Paragraph(
                f"Item {index}, images (small copies; the originals are in the file):", s.cell
            ),
            table,
        ]
    )
    yield Spacer(1, 4)


def _fit(width: float, height: float) -> tuple[float, float]:
    scale = THUMB / max(width, height, 1)
    return width * scale, height * scale


def headers_appendix(rows: tuple[Row, ...], s: Styles) -> Iterator[Flowable]:
    """Every item's header fields as received, in order (every ``Received:`` line)."""
    yield CondPageBreak(SECTION_MIN_SPACE)
    yield Mark(section="Appendix: full headers")
    yield Paragraph("Appendix: full headers of every item", s.h1)
    for row in rows:
        if not row.headers:
            continue
        yield CondPageBreak(40)
        yield Paragraph(esc(f"Item {row.item.index} (journal seq {row.item.seq})"), s.h2)
        text = "\n".join(f"{clean(n)}: {' '.join(v.split())}" for n, v in row.headers)
        yield Preformatted(text, s.mono, maxLineLength=HEADER_COLUMNS, newLineChars="    ")


def transcript(rows: tuple[Row, ...], s: Styles) -> Iterator[Flowable]:
    """The instant messages of each offender as one conversation, in the order received, both
    sides (the person's own messages marked); a room's messages, with the context kept around
    the offender's, as one conversation per room."""
    chats = [r for r in rows if r.item.channel == "xmpp"]
    if not chats:
        return
    yield CondPageBreak(SECTION_MIN_SPACE)
    yield Mark(section="Chat transcript")
    yield Paragraph("Chat transcript (instant messages, in the order received)", s.h1)
    threads: dict[str, list[Row]] = {}
    for r in chats:
        key = f"Group chat {r.item.room}" if r.item.room else r.item.offender
        threads.setdefault(key, []).append(r)
    for title, thread in threads.items():
        yield Paragraph(esc(title), s.h2)
        lines = []
        for r in sorted(thread, key=lambda r: (r.item.received_at, r.item.seq)):
            who = r.content.sender or r.sender or "?"
            if r.item.direction == "outgoing":
                who = f"the person ({who})"
            elif r.item.room and not r.item.context_of:
                who = f"{who} [offender: {r.item.offender}]"
            lines.append(f"[{when(r.item.received_at)} UTC] (item {r.item.index}) {who}:")
            lines.append(f"    {r.content.text or '(no text)'}")
        text = "\n".join(lines)
        yield Preformatted(text, s.text, maxLineLength=TEXT_COLUMNS, newLineChars="    ")


def items_story(report: Report, s: Styles) -> list[Flowable]:
    if not report.rows:
        return []
    story: list[Flowable] = [*item_table(report.rows, s)]
    if report.bodies:
        story += transcript(report.rows, s)
    story += [CondPageBreak(SECTION_MIN_SPACE), Mark(section="Item details")]
    story.append(Paragraph("Item details", s.h1))
    if not report.bodies:
        story.append(Paragraph("Summary copy: the messages' text is left out.", s.body))
    # Grouped by offender (journal order within), each group a bookmark under "Item details".
    offenders = list(dict.fromkeys(r.item.offender for r in report.rows))
    for offender in offenders:
        mine = [r for r in report.rows if r.item.offender == offender]
        name = clean(offender) or "(unknown)"
        story.append(Mark(section=f"{name} ({len(mine)} items)", level=1))
        if len(offenders) > 1:
            story.append(Paragraph(esc(f"Items from {name}"), s.h2))
        for row in mine:
            story += item_detail(row, s, bodies=report.bodies)
    story += headers_appendix(report.rows, s)
    return story
