"""guardmail import: mbox, .eml folders and Maildirs read byte-exact and bounded; the offenders'
items archived once with their provenance, never acted on; progress shown."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import mailbox
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.core.item import Item, mail_item
from guardmail.core.rules import OffenderRule, RuleSet, Verdict
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.imports import UnreadableSource
from guardmail.imports.engine import DONE, Settings, run_import
from guardmail.imports.files import EmlFolder, MaildirFolder, Mbox
from guardmail.imports.progress import Counts, Progress, line
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])


def message(n: int, *, offender: bool) -> bytes:
    sender = "stalker@example.net" if offender else f"friend{n}@example.org"
    return (
        f"From: <{sender}>\nTo: me@example.org\nSubject: note {n}\nMessage-ID: <{n}@x>\n\n"
        f"line one of {n}\n>From the quoted line\nline three\n"
    ).encode()


def write_mbox(path: Path, count: int, every: int = 100) -> list[bytes]:
    """An mbox of ``count`` messages, every ``every``-th from the offender; their bytes as the
    importer must archive them (the message and the empty line before the next From_ line)."""
    bodies = [message(n, offender=n % every == 0) + b"\n" for n in range(count)]
    with path.open("wb") as f:
        for n, body in enumerate(bodies):
            f.write(f"From sender{n}@example.org Mon Nov  3 10:00:{n % 60:02d} 2025\n".encode())
            f.write(body)
    return bodies


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    vault = Vault(tmp_path / "vault", storage, "t")
    yield Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    storage.close()


def settings(**kw: object) -> Settings:
    return Settings(tenant="t", account="import", **kw)  # type: ignore[arg-type]


def quiet() -> Progress:
    return Progress(None)


def test_mbox_messages_are_the_bytes_between_from_lines(tmp_path: Path) -> None:
    path = tmp_path / "box"
    raw = (
        b"From a@b Mon Nov  3 10:00:00 2025\nFrom: <a@b>\n\nbody\n>From here\nFrom no blank\n\n"
        b"From c@d Tue Nov  4 10:00:00 2025\r\nFrom: <c@d>\r\n\r\nlast line, no newline"
    )
    path.write_bytes(raw)
    found = list(Mbox(path).items())
    assert [f.raw for f in found] == [
        b"From: <a@b>\n\nbody\n>From here\nFrom no blank\n\n",
        b"From: <c@d>\r\n\r\nlast line, no newline",
    ]
    first, second = found
    assert dict(first.meta) == {
        "mbox_offset": "0",
        "mbox_from_line": "From a@b Mon Nov  3 10:00:00 2025",
        "mbox_quoted_from_lines": "1",
    }
    assert dict(second.meta)["mbox_offset"] == str(raw.index(b"From c@d"))
    assert second.key == f"{raw.index(b'From c@d')}:{hashlib.sha256(second.raw or b'').hexdigest()}"
    assert second.position == len(raw)


def test_mbox_reader_agrees_with_the_stdlib_on_message_count(tmp_path: Path) -> None:
    path = tmp_path / "box"
    bodies = write_mbox(path, 50)
    found = list(Mbox(path).items())
    assert [f.raw for f in found] == bodies
    box = mailbox.mbox(path)
    try:
        assert len(box) == len(found)
    finally:
        box.close()


def test_a_file_that_is_no_mbox_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Dear diary\n")
    with pytest.raises(UnreadableSource, match="notes.txt: not an mbox file"):
        Mbox(path)


def test_a_huge_single_line_is_streamed_not_held(tmp_path: Path) -> None:
    path = tmp_path / "hostile"
    line_bytes = 48 * 1024 * 1024
    with path.open("wb") as f:
        f.write(b"From x@y Mon Nov  3 10:00:00 2025\nFrom: <stalker@example.net>\n\n")
        chunk = b"A" * (1024 * 1024)
        for _ in range(line_bytes // len(chunk)):
            f.write(chunk)
        f.write(b"\n\nFrom z@y Mon Nov  3 10:00:00 2025\nFrom: <ok@example.org>\n\nfine\n")
    tracemalloc.start()
    try:
        found = list(Mbox(path, max_item=1024 * 1024).items())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [f.raw is None for f in found] == [True, False]
    assert found[0].size > line_bytes
    assert peak < 8 * 1024 * 1024  # the 48 MB line was never in memory


def test_an_mbox_of_10000_is_imported_with_progress_and_again_with_nothing_doubled(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    path = tmp_path / "box"
    bodies = write_mbox(path, 10_000)
    before = path.read_bytes()
    out = io.StringIO()
    ticks = iter(range(10**6))
    progress = Progress(out, every=2, clock=lambda: float(next(ticks)))
    counts = run_import(Mbox(path), pipeline=pipeline, settings=settings(), progress=progress)
    assert (counts.items, counts.archived, counts.already) == (10_000, 100, 0)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and "10,000 items (100 archived" in lines[-1]
    assert "MB/s" in lines[0] and "left" in lines[0]
    vault = pipeline.vault
    archived = vault.rows(kind="archived")
    assert [vault.blobs.get(r.sha256 or "") for r in archived] == bodies[::100]
    body = journal.entry(archived[0])
    assert body["imported"]["note"].startswith(f"imported from mbox {path} at ")
    assert body["imported"]["note"].endswith("; not received by guardmail")
    assert body["offender"] == "Ex" and body["meta"]["mbox_offset"] == "0"
    actions = vault.rows(kind="action")
    assert len(actions) == 100 and {journal.entry(a)["done"] for a in actions} == {DONE}
    assert vault.unacted() == []

    again = run_import(Mbox(path), pipeline=pipeline, settings=settings(), progress=quiet())
    assert (again.items, again.archived, again.already) == (10_000, 0, 100)
    assert len(vault.rows()) == 200
    assert path.read_bytes() == before  # the source is left as it was
    assert verify_vault(vault) == []


def test_all_archives_the_clean_items_too_once(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "box"
    write_mbox(path, 30, every=10)
    run_import(Mbox(path), pipeline=pipeline, settings=settings(), progress=quiet())
    counts = run_import(
        Mbox(path), pipeline=pipeline, settings=settings(everything=True), progress=quiet()
    )
    assert (counts.archived, counts.already) == (27, 3)
    assert len(pipeline.vault.rows(kind="archived")) == 30


def test_the_same_bytes_imported_from_a_copy_are_archived_once(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    path = tmp_path / "box"
    write_mbox(path, 30, every=10)
    copy = tmp_path / "moved"
    copy.write_bytes(path.read_bytes())
    run_import(Mbox(path), pipeline=pipeline, settings=settings(), progress=quiet())
    counts = run_import(Mbox(copy), pipeline=pipeline, settings=settings(), progress=quiet())
    assert (counts.archived, counts.already) == (0, 3)


def test_a_folder_of_eml_files_is_imported(tmp_path: Path, pipeline: Pipeline) -> None:
    folder = tmp_path / "saved"
    (folder / "2025").mkdir(parents=True)
    (folder / "2025" / "a.eml").write_bytes(message(1, offender=True))
    (folder / "b.EML").write_bytes(message(2, offender=False))
    (folder / "notes.txt").write_bytes(message(3, offender=True))
    (folder / "link.eml").symlink_to(folder / "notes.txt")
    counts = run_import(EmlFolder(folder), pipeline=pipeline, settings=settings(), progress=quiet())
    assert (counts.items, counts.archived) == (2, 1)
    (row,) = pipeline.vault.rows(kind="archived")
    assert pipeline.vault.blobs.get(row.sha256 or "") == message(1, offender=True)
    assert journal.entry(row)["meta"]["eml_file"] == "2025/a.eml"


def test_a_maildir_is_imported_and_left_in_place(tmp_path: Path, pipeline: Pipeline) -> None:
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1.host:2,S").write_bytes(message(1, offender=True))
    (md / "new" / "2.host").write_bytes(message(2, offender=True))
    (md / "new" / "3.host").write_bytes(message(3, offender=False))
    (md / "tmp" / "4.host").write_bytes(message(4, offender=True))
    listing = sorted(p.relative_to(md) for p in md.rglob("*"))
    counts = run_import(MaildirFolder(md), pipeline=pipeline, settings=settings(), progress=quiet())
    assert (counts.items, counts.archived) == (3, 2)
    assert sorted(p.relative_to(md) for p in md.rglob("*")) == listing
    # The user reads message 2 (its name gains flags): importing again adds nothing.
    (md / "new" / "2.host").rename(md / "cur" / "2.host:2,S")
    again = run_import(MaildirFolder(md), pipeline=pipeline, settings=settings(), progress=quiet())
    assert (again.archived, again.already) == (0, 2)


def test_a_maildir_needs_cur_and_new(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="not a Maildir"):
        MaildirFolder(tmp_path)


@pytest.mark.parametrize(
    ("counts", "total", "elapsed", "want"),
    [
        (
            Counts(items=1000, position=2_000_000, archived=10),
            8_000_000,
            2.0,
            "import: 1,000 items (10 archived, 0 already), 2.0 of 8.0 MB (25%), "
            "500 items/s, 1.0 MB/s, about 0m06s left",
        ),
        (
            Counts(items=5, position=500_000, too_large=1),
            None,
            1.0,
            "import: 5 items (0 archived, 0 already, 1 too large), 0.5 MB, 5 items/s, 0.5 MB/s",
        ),
    ],
)
def test_progress_line(counts: Counts, total: int | None, elapsed: float, want: str) -> None:
    assert line(counts, total=total, elapsed=elapsed) == want


def test_the_report_keeps_imported_items_apart_from_live_ones(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    class Mover:
        async def act(self, item: Item, verdict: Verdict) -> str:
            return "moved to Quarantine"

    live = mail_item(
        message(7, offender=True), tenant="t", account="a", source_ref="new/7", received_at=NOW
    )
    asyncio.run(pipeline.process(live, Mover()))
    path = tmp_path / "box"
    write_mbox(path, 1, every=1)
    run_import(Mbox(path), pipeline=pipeline, settings=settings(), progress=quiet())
    evidence = select(pipeline.vault.rows(), tenant="t", criteria=Criteria())
    assert [bool(i.imported) for i in evidence.items] == [False, True]
    out = tmp_path / "bundle"
    write_bundle(pipeline.vault, evidence, out, now=NOW, version="test")
    items = json.loads((out / "manifest.json").read_text())["items"]
    assert "imported" not in items[0]
    assert items[1]["imported"].startswith(f"imported from mbox {path}")
    html = (out / "report.html").read_text()
    assert html.count("<td>live</td>") == 1 and html.count("<td>imported</td>") == 1
    assert "Ex (imported)" in html  # the timeline counts them apart
