"""The case journal: the protected person's own notes (calls made, reports filed, letters kept).

Each note is a journal entry of kind ``note``, hash-chained and timestamped like any item:

    {"kind": "note", "text": "...", "offender": "Name" | null,
     "files": [{"name": "letter.pdf", "sha256": "...", "size": 1234}, ...],
     "note_kind": "abuse-report", "to": "abuse@example.net"}    (both optional)

``note_kind`` says what the person did when it is one of ``NOTE_KINDS`` (an abuse report sent by
hand, a police report, a court filing, an organisation contacted for help), ``to`` to whom; the
report's timeline shows an ``abuse-report`` note as an abuse report sent.

An attached file is a blob (stored, fsync'd) before the entry that names it is written, so a
note never names bytes the vault does not hold. ``offender`` ties a note to one offender: such
a note goes only into exports for that offender; a note without one is the person's own record
and goes into every export (see guardmail.export.selection).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from guardmail.storage.base import JournalRow
from guardmail.vault import journal
from guardmail.vault.store import Vault

KIND = "note"
MAX_TEXT = 20_000  # characters: a note is a paragraph or a page, not a document (attach that)
MAX_NAME = 200
NOTE_KINDS = ("note", "abuse-report", "police", "court", "help")
MAX_TO = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteFile:
    name: str  # the file's base name as attached
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    seq: int
    time: datetime
    text: str
    offender: str  # "" for a note about the whole case
    files: tuple[NoteFile, ...]
    kind: str = "note"  # one of NOTE_KINDS
    to: str = ""  # whom it was sent to or who was contacted, "" if not said


def add_note(
    vault: Vault,
    text: str,
    *,
    files: list[tuple[str, bytes]],
    offender: str = "",
    kind: str = "note",
    to: str = "",
    now: datetime,
) -> Note:
    """Store each attached (name, bytes) as a blob, then journal the note naming them.

    ValueError (a sentence naming the value) for empty or overlong text, an unknown ``kind`` or
    an overlong or multi-line ``to``.
    """
    if not text.strip():
        raise ValueError("a note needs some text")
    if kind not in NOTE_KINDS:
        raise ValueError(f"a note's kind is one of {', '.join(NOTE_KINDS)}, not {kind!r}")
    if len(to) > MAX_TO or any(c in to for c in "\r\n\x00"):
        raise ValueError(f"--to is one line of at most {MAX_TO} characters")
    if len(text) > MAX_TEXT:
        raise ValueError(f"a note is at most {MAX_TEXT} characters (this one has {len(text)})")
    attached = []
    for name, data in files:
        sha = hashlib.sha256(data).hexdigest()
        vault.blobs.put(data, sha)
        attached.append(NoteFile(name=PurePath(name).name[:MAX_NAME], sha256=sha, size=len(data)))
    fields: dict[str, Any] = {
        "text": text,
        "offender": offender or None,
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in attached],
    }
    if kind != "note":
        fields["note_kind"] = kind
    if to:
        fields["to"] = to
    row = vault.record(KIND, fields, now=now)
    return Note(
        seq=row.seq,
        time=now,
        text=text,
        offender=offender,
        files=tuple(attached),
        kind=kind,
        to=to,
    )


def note_of(row: JournalRow) -> Note | None:
    """The note a journal row holds; None if it is not a readable note."""
    if row.kind != KIND:
        return None
    body = journal.entry(row)
    text = body.get("text")
    if not isinstance(text, str):
        return None
    files = []
    for f in body.get("files") or []:
        if isinstance(f, dict) and isinstance(f.get("sha256"), str):
            size = f.get("size")
            files.append(
                NoteFile(
                    name=str(f.get("name") or "file")[:MAX_NAME],
                    sha256=f["sha256"],
                    size=size if isinstance(size, int) else 0,
                )
            )
    try:
        when = datetime.fromisoformat(str(body.get("time")))
    except ValueError:
        when = datetime.min
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    offender = body.get("offender")
    kind, to = body.get("note_kind"), body.get("to")
    return Note(
        seq=row.seq,
        time=when,
        text=text,
        offender=offender if isinstance(offender, str) else "",
        files=tuple(files),
        kind=kind if kind in NOTE_KINDS else "note",
        to=to[:MAX_TO] if isinstance(to, str) else "",
    )
