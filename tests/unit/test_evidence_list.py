"""`evidence list` prints a line for every entry with bytes, even one whose fields a hand edit
left without a channel or an action (verify names such an entry; the list still shows it)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from guardmail.commands.evidence_list import list_evidence
from guardmail.storage.base import JournalRow
from guardmail.vault.store import Vault


class _Rows:
    def __init__(self, rows: list[JournalRow]) -> None:
        self._rows = rows

    def iter_rows(self, kind: str | None = None) -> Iterator[JournalRow]:
        return iter([r for r in self._rows if kind is None or r.kind == kind])


def _row(seq: int, kind: str, body: dict[str, object], sha: str | None) -> JournalRow:
    return JournalRow(
        tenant="default",
        seq=seq,
        kind=kind,
        body=json.dumps(body),
        prev_hash="0" * 64,
        hash="1" * 64,
        sha256=sha,
    )


def test_an_entry_without_channel_or_action_is_listed_not_a_type_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [
        _row(1, "archived", {"time": "t1", "subject": "hi", "offender": "Ex"}, "a" * 64),
        _row(2, "archived", {"time": "t2", "channel": 7, "action": None}, "b" * 64),
        _row(3, "action", {"archived_seq": 1, "done": "moved"}, None),
    ]
    vault: Vault = _Rows(rows)  # type: ignore[assignment]
    list_evidence(vault, kinds=("archived",), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:4] == ["1", "t1", "None", "None"]
    assert "(moved)" in lines[0]
    assert lines[1].split()[:3] == ["2", "t2", "7"]
    assert "no action recorded" in lines[1]
