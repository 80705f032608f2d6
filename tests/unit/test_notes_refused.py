"""The case journal's notes (``guardmail.vault.notes``): what a note refuses, each with a
sentence naming the value, before anything is stored; and what a reader makes of a note entry
that is not one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.notes import MAX_TEXT, MAX_TO, add_note, note_of
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield Vault(tmp_path / "vault" / "jane", storage, "jane")
    storage.close()


@pytest.mark.parametrize(
    ("text", "kind", "to", "why"),
    [
        (" \n", "note", "", "a note needs some text"),
        ("called", "diary", "", "a note's kind is one of note, abuse-report, .* not 'diary'"),
        ("sent", "abuse-report", "abuse@example.net\r\nBcc: x", "--to is one line"),
        ("sent", "abuse-report", "a" * (MAX_TO + 1), f"at most {MAX_TO} characters"),
        ("x" * (MAX_TEXT + 1), "note", "", f"at most {MAX_TEXT} characters .*{MAX_TEXT + 1}"),
    ],
)
def test_a_note_refused_stores_nothing_and_says_why(
    vault: Vault, text: str, kind: str, to: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        add_note(vault, text, files=[("letter.pdf", b"%PDF")], kind=kind, to=to, now=NOW)
    assert vault.rows() == [] and vault.blobs.directories() == []


def test_a_note_entry_read_back_and_what_is_not_a_note(vault: Vault) -> None:
    note = add_note(
        vault, "Reported to the police", files=[("../letter.pdf", b"%PDF")], kind="police", now=NOW
    )
    (row,) = vault.rows()
    back = note_of(row)
    assert back == note and back.files[0].name == "letter.pdf"
    other = vault.record("custody", {"what": "view"}, now=NOW)
    assert note_of(other) is None
    # A note entry with no text, or with a time and files no reader understands.
    assert note_of(vault.record("note", {"text": 5}, now=NOW)) is None
    odd = vault.record(
        "note",
        {"text": "t", "files": ["x", {"sha256": "a" * 64, "size": "big"}], "note_kind": "?"},
        now=NOW,
    )
    read = note_of(odd)
    assert read is not None and read.kind == "note" and read.files[0].size == 0


def test_a_file_attached_to_a_note_that_is_altered_or_removed_is_named_by_verify(
    vault: Vault,
) -> None:
    # Before, verify re-hashed only the blob an entry names as its item: a note's attachments
    # could be altered or deleted unnoticed.
    note = add_note(
        vault, "letter", files=[("a.pdf", b"%PDF one"), ("b.pdf", b"%PDF two")], now=NOW
    )
    assert verify_vault(vault) == []
    first, second = (vault.blobs.path(f.sha256) for f in note.files)
    first.write_bytes(b"%PDF forged")
    second.unlink()
    assert [str(p) for p in verify_vault(vault)] == [
        f"entry 1: blob {note.files[0].sha256} altered (SHA-256 mismatch)",
        f"entry 1: blob {note.files[1].sha256} missing",
    ]
