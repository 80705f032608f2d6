"""The report PDF's case pages: the person's case journal and the certification template.

Contracts:
- Notes are printed whole, in a fixed-width font that reads no markup, each with its journal
  entry and its attached files' SHA-256.
- The certification is a template for a custodian's declaration (hash-identified electronic
  records, as US Federal Rule of Evidence 902(14) practice uses): its facts (versions, journal
  run, counts, the last entry's hash) come from the ``Report``; name, place, signature and date
  are left blank for the person to fill in.
"""

from __future__ import annotations

from collections.abc import Iterator

from reportlab.platypus import CondPageBreak, Flowable, Paragraph, Preformatted

from guardmail.export.details import clean
from guardmail.export.pdf_style import Mark, Styles, esc, when
from guardmail.export.summary import Report

TEXT_COLUMNS = 100


def case_journal(r: Report, s: Styles) -> Iterator[Flowable]:
    if not r.notes:
        return
    yield Mark(section="Case journal")
    yield Paragraph("Case journal: what the protected person did", s.h1)
    for note in r.notes:
        yield Paragraph(esc(f"{when(note.time)} UTC \u00b7 journal entry {note.seq}"), s.h2)
        yield Preformatted(clean(note.text), s.text, maxLineLength=TEXT_COLUMNS)
        for name, sha256, size in note.files:
            yield Paragraph(
                f"File {esc(name)} ({size:,} bytes), SHA-256 <font name='GMMono'>{sha256}</font>",
                s.cell,
            )


CERTIFICATION = """\
I, ______________________________ (name), declare:

1. I am the person protected by this case, or the custodian of the records it holds, and I am
   familiar with how they were made.

2. The records listed in this bundle were collected by guardmail {version}, which received each
   message, stored its bytes unaltered in an evidence vault identified by their SHA-256 hash,
   and wrote each event to an append-only journal in which every entry carries the hash of the
   one before it. This process was in regular use and produces an accurate copy of what was
   received.

3. Each item file in this bundle has the SHA-256 hash value shown for it in this report, in
   manifest.json and in SHA256SUMS. Those values were computed when the item was received and
   again when this bundle was made on {made} UTC. The journal entries
   covering them run from seq {first} to seq {last}; the last has the hash
   {last_hash}.

4. {items} items, {warnings} warning(s) and {notes} case note(s) are included; of the journal's
   other entries the bundle holds only their hashes.

I declare under penalty of perjury under the laws of ______________________ that the
foregoing is true and correct.


Signature: ______________________________     Date: ____________________

Place: __________________________________"""


def certification(r: Report, s: Styles, last_hash: str) -> Iterator[Flowable]:
    yield CondPageBreak(400)
    yield Mark(section="Certification (template)")
    yield Paragraph("Certification of records (template)", s.h1)
    yield Paragraph(
        "A custodian's declaration that these electronic records are what they appear to be, "
        "identified by their hash values (the practice of, for example, US Federal Rule of "
        "Evidence 902(14)). Fill in, sign and date it only if it is true; the wording a court "
        "needs may differ: ask the officer or your lawyer.",
        s.body,
    )
    text = CERTIFICATION.format(
        version=r.version,
        made=when(r.generated_at),
        first=r.journal_first,
        last=r.journal_last,
        last_hash=last_hash or "-",
        items=len(r.rows),
        warnings=len(r.warnings),
        notes=len(r.notes),
    )
    yield Preformatted(text, s.pre, maxLineLength=TEXT_COLUMNS)
