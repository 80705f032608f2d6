"""Evidence export: a bundle a third party can check with sha256sum and the journal formula."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from guardmail.core.item import Channel, Identity, Item, mail_item
from guardmail.core.rules import Action, OffenderRule, RuleSet, decide
from guardmail.export import BundleUnreadable, ExportError
from guardmail.export.bundle import BundleResult, write_bundle
from guardmail.export.details import describe
from guardmail.export.evidence import Criteria, Evidence
from guardmail.export.progress import ProgressLine
from guardmail.export.selection import select
from guardmail.export.verify import verify_bundle
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY1 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"

CONFIG = """\
state_dir: {root}/state
tenant: jane
offenders:
  - name: Jo Stalker
    addresses: [jo@stalk.example]
    jids: [jo@chat.example]
  - name: Burner
    domains: [burner.example]
    action: block
  - name: Never Wrote
    addresses: [quiet@example.org]
"""

RULES = RuleSet(
    [
        OffenderRule(name="Jo Stalker", addresses=("jo@stalk.example",), jids=("jo@chat.example",)),
        OffenderRule(name="Burner", domains=("burner.example",), action=Action.BLOCK),
    ]
)

WARNING = (
    b"From: Jane <jane@home.example>\r\nTo: jo@stalk.example\r\n"
    b"Subject: Stop contacting me\r\nMessage-ID: <warn1@home.example>\r\n"
    b"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n\r\n"
    b"Do not contact me again. Any further message goes to the police.\r\n"
)


def mail(sender: str, subject: str, body: bytes, n: int) -> bytes:
    return (
        f"Return-Path: <{sender.split('<')[-1].rstrip('>')}>\r\n"
        "Delivered-To: jane@home.example\r\n"
        f"From: {sender}\r\nTo: Jane <jane@home.example>\r\nSubject: {subject}\r\n"
        f"Message-ID: <m{n}@stalk.example>\r\nDate: Fri, 20 Nov 2026 09:30:00 +0000\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    root: Path
    config: Path
    vault: Vault
    storage: SQLiteStorage
    raws: list[bytes]  # archived items in seq order
    warning_seq: int


def _archive(vault: Vault, item: Item) -> int:
    verdict = decide(item.identities, RULES, now=item.received_at)
    receipt = vault.put(
        item.raw,
        source_ref=item.source_ref,
        metadata=evidence_metadata(item, verdict),
        now=item.received_at,
    )
    vault.record(
        "action",
        {"archived_seq": receipt.seq, "action": str(verdict.action), "done": "moved"},
        now=item.received_at,
        sha256=receipt.sha256,
        source_ref=item.source_ref,
    )
    return receipt.seq


def journal_warning(vault: Vault, raw: bytes, *, offender: str, when: datetime) -> int:
    """Journal a sent warning as the warning issue will: blob in the vault, entry naming it."""
    sha = hashlib.sha256(raw).hexdigest()
    vault.blobs.put(raw, sha)
    row = vault.record(
        "warning",
        {
            "offender": offender,
            "to": "jo@stalk.example",
            "sent_at": when.isoformat(),
            "message_id": "<warn1@home.example>",
        },
        now=when,
        sha256=sha,
    )
    return row.seq


def make_case(root: Path) -> Case:
    """A tenant "jane" with four items over four days, their actions and one warning."""
    config = root / "guardmail.yaml"
    config.write_text(CONFIG.format(root=root))
    storage = SQLiteStorage(root / "state" / "guardmail.sqlite3")
    vault = Vault(root / "state" / "vault" / "jane", storage, "jane")
    raws = [
        mail("Jo <jo@stalk.example>", "first contact", b"I found you.\r\n", 1),
        mail("x7@burner.example", HOSTILE, b"<b>bold</b> & more\r\n", 2),
        mail("Jo <jo@stalk.example>", "", b"I am watching you every day\x00\xff\r\n", 3),
        b"<message from='jo@chat.example/phone' to='jane@home.example' type='chat'>"
        b"<body>answer me now</body></message>",
    ]
    items = [
        mail_item(
            raws[i],
            tenant="jane",
            account="home",
            source_ref=f"new/{i}",
            received_at=DAY1 + timedelta(days=i),
        )
        for i in range(3)
    ]
    items.append(
        Item(
            raw=raws[3],
            channel=Channel.XMPP,
            tenant="jane",
            account="chat",
            source_ref="xmpp/1",
            received_at=DAY1 + timedelta(days=3),
            identities=(Identity(source="jid", address="jo@chat.example"),),
        )
    )
    warning_seq = 0
    for n, item in enumerate(items):
        _archive(vault, item)
        if n == 1:
            warning_seq = journal_warning(
                vault, WARNING, offender="Jo Stalker", when=DAY1 + timedelta(days=1, hours=3)
            )
    return Case(
        root=root, config=config, vault=vault, storage=storage, raws=raws, warning_seq=warning_seq
    )


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    c = make_case(tmp_path)
    yield c
    c.storage.close()


def evidence(c: Case, criteria: Criteria | None = None) -> Evidence:
    return select(c.vault.rows(), tenant="jane", criteria=criteria or Criteria())


def export(c: Case, name: str, criteria: Criteria | None = None) -> BundleResult:
    return write_bundle(c.vault, evidence(c, criteria), c.root / name, now=NOW, version="9.9")


# Bundles as files: a folder, or a zip's members under its one top folder.


def files_of(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()
        }
    with zipfile.ZipFile(path) as z:
        return {i.filename.split("/", 1)[1]: z.read(i) for i in z.infolist() if not i.is_dir()}


def rewrite(path: Path, files: dict[str, bytes]) -> None:
    """Replace a bundle's content, as someone tampering with it would."""
    if path.is_dir():
        shutil.rmtree(path)
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return
    top = path.name[: -len(".zip")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"{top}/{name}", data)
    path.write_bytes(buf.getvalue())


def resum(files: dict[str, bytes]) -> None:
    """Recompute SHA256SUMS over the (tampered) files, as a careful forger would."""
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in files.items()
        if name != "SHA256SUMS"
    ]
    files["SHA256SUMS"] = "".join(lines).encode()


def manifest(files: dict[str, bytes]) -> dict[str, object]:
    value = json.loads(files["manifest.json"])
    assert isinstance(value, dict)
    return value


def item_names(files: dict[str, bytes]) -> list[str]:
    return sorted(n for n in files if n.startswith("items/"))


# The bundle


def test_exported_folder_passes_sha256sum_check_covering_every_file(case: Case) -> None:
    result = export(case, "bundle")
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"],
        cwd=result.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {
        line.split("  ", 1)[1] for line in (result.path / "SHA256SUMS").read_text().splitlines()
    }
    assert listed == set(files_of(result.path)) - {"SHA256SUMS"}
    assert {"README.txt", "manifest.json", "journal.jsonl", "report.pdf", "report.html"} <= listed


def test_exported_zip_unzips_into_one_folder_that_passes_sha256sum(
    case: Case, tmp_path: Path
) -> None:
    result = export(case, "case-42.zip")
    with zipfile.ZipFile(result.path) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"case-42"}
        z.extractall(tmp_path / "unzipped")
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "unzipped" / "case-42", check=False
    )
    assert check.returncode == 0
    assert files_of(result.path) == files_of(tmp_path / "unzipped" / "case-42")


def test_items_are_the_archived_bytes_named_to_sort_by_time(case: Case) -> None:
    files = files_of(export(case, "bundle").path)
    names = item_names(files)
    assert [files[n] for n in names] == case.raws
    assert names[0] == "items/0001-20261120T093000Z-seq1.eml"
    assert names[3].startswith("items/0004-20261123T093000Z-seq") and names[3].endswith(".xml")


def test_manifest_holds_each_items_metadata(case: Case) -> None:
    files = files_of(export(case, "bundle").path)
    items = manifest(files)["items"]
    assert isinstance(items, list)
    first, hostile = items[0], items[1]
    assert first == {
        "file": "items/0001-20261120T093000Z-seq1.eml",
        "seq": 1,
        "sha256": hashlib.sha256(case.raws[0]).hexdigest(),
        "size": len(case.raws[0]),
        "received_at": "2026-11-20T09:30:00+00:00",
        "archived_at": "2026-11-20T09:30:00+00:00",
        "channel": "mail",
        "account": "home",
        "source_ref": "new/0",
        "offender": "Jo Stalker",
        "rule": "addresses[0]: jo@stalk.example",
        "header": "Return-Path",
        "action": "quarantine",
        "done": "moved",
        "subject": "first contact",
        "message_id": "<m1@stalk.example>",
        "date": "Fri, 20 Nov 2026 09:30:00 +0000",
    }
    assert hostile["offender"] == "Burner" and hostile["action"] == "block"
    assert hostile["subject"] == HOSTILE


def test_journal_runs_from_first_to_last_item_with_the_rows_between(case: Case) -> None:
    files = files_of(export(case, "bundle").path)
    rows = [json.loads(line) for line in files["journal.jsonl"].decode().splitlines()]
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(1, 10))  # with action and warning rows; the export entry is 10
    kinds = [json.loads(r["body"])["kind"] for r in rows]
    assert kinds.count("archived") == 4 and "action" in kinds and "warning" in kinds
    assert set(rows[0]) == {"seq", "prev_hash", "hash", "body"}


def test_readme_chain_check_recomputes_the_journal_with_python_alone(case: Case) -> None:
    path = export(case, "bundle").path
    readme = (path / "README.txt").read_text()
    script = re.search(r"^    python3 - <<'EOF'\n.*?^    EOF$", readme, re.S | re.M)
    assert script is not None and "sha256sum -c SHA256SUMS" in readme
    assert 'hash = SHA-256( prev_hash + "\\n" + body )' in readme
    code = "\n".join(line[4:] for line in script.group(0).splitlines())
    ok = subprocess.run(["bash", "-c", code], cwd=path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "journal chain intact" in ok.stdout, ok.stderr
    lines = (path / "journal.jsonl").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    (path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        ["bash", "-c", code], cwd=path, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "chain broken" in bad.stderr


def test_sent_warning_is_exported_byte_for_byte_as_its_own_file(case: Case) -> None:
    files = files_of(export(case, "bundle").path)
    assert files["warning-jo-stalker.eml"] == WARNING
    warnings = manifest(files)["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    warning = warnings[0]
    assert warning["seq"] == case.warning_seq and warning["to"] == "jo@stalk.example"
    assert warning["sha256"] == hashlib.sha256(WARNING).hexdigest()


def test_warning_is_left_out_when_its_offender_is_not_exported(case: Case) -> None:
    files = files_of(export(case, "bundle", Criteria(offenders=("burner",))).path)
    assert not any(n.startswith("warning-") for n in files)
    assert manifest(files)["warnings"] == []


def test_export_is_journaled_naming_the_sha256_of_its_sha256sums(case: Case) -> None:
    result = export(case, "bundle.zip")
    (row,) = case.vault.rows(kind="export")
    sums = files_of(result.path)["SHA256SUMS"]
    assert row.sha256 == result.sums_sha256 == hashlib.sha256(sums).hexdigest()
    assert case.vault.blobs.get(row.sha256) == sums  # the vault keeps what was handed over
    body = json.loads(row.body)
    assert body["items"] == 4 and body["form"] == "zip" and body["sha256sums"] == row.sha256
    assert body["zip_sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert verify_vault(case.vault) == []


def test_offender_filter_ignores_case_and_dates_are_inclusive(case: Case) -> None:
    by_name = evidence(case, Criteria(offenders=("JO STALKER",)))
    assert [i.seq for i in by_name.items] == [1, 6, 8]
    ranged = evidence(case, Criteria(since=date(2026, 11, 21), until=date(2026, 11, 22)))
    assert [(i.received_at.day, i.seq) for i in ranged.items] == [(21, 3), (22, 6)]
    # From the first item to the last item's action row, the warning (seq 5) included.
    assert [r.seq for r in ranged.journal] == [3, 4, 5, 6, 7]


def test_export_refuses_an_altered_blob_and_leaves_nothing_behind(case: Case) -> None:
    row = case.vault.row(1)
    assert row is not None and row.sha256
    blob = case.vault.blobs.path(row.sha256)
    blob.write_bytes(blob.read_bytes().replace(b"found", b"FOUND"))
    with pytest.raises(ExportError, match=f"blob {row.sha256} is altered"):
        export(case, "bundle.zip")
    assert sorted(p.name for p in case.root.iterdir()) == ["guardmail.yaml", "state"]
    assert case.vault.rows(kind="export") == []


def test_export_refuses_a_tampered_journal(case: Case) -> None:
    case.storage._conn.execute("UPDATE journal SET body = replace(body, 'moved', 'x') WHERE seq=2")
    with pytest.raises(ExportError, match="entry 2: content altered"):
        evidence(case)


def test_export_never_overwrites(case: Case) -> None:
    (case.root / "bundle").mkdir()
    with pytest.raises(FileExistsError):
        export(case, "bundle")


# Verifying a bundle on its own


@pytest.fixture(params=["bundle", "bundle.zip"], ids=["folder", "zip"])
def bundle(request: pytest.FixtureRequest, case: Case) -> Path:
    return export(case, str(request.param)).path


def test_intact_bundle_verifies(bundle: Path) -> None:
    assert verify_bundle(bundle) == []


def test_verify_names_a_flipped_byte(bundle: Path) -> None:
    files = files_of(bundle)
    name = item_names(files)[1]
    data = bytearray(files[name])
    data[10] ^= 0x01
    files[name] = bytes(data)
    rewrite(bundle, files)
    problems = verify_bundle(bundle)
    assert f"changed: {name} (SHA-256 differs from SHA256SUMS)" in problems
    assert any(p.startswith(f"changed: {name} (SHA-256 differs from journal") for p in problems)


def test_verify_names_a_deleted_file(bundle: Path) -> None:
    files = files_of(bundle)
    name = item_names(files)[2]
    del files[name]
    rewrite(bundle, files)
    assert verify_bundle(bundle) == [f"missing: {name} (listed in SHA256SUMS)"]


def test_verify_names_an_added_file(bundle: Path) -> None:
    files = files_of(bundle)
    files["items/0005-20261124T000000Z-seq99.eml"] = b"From: planted@example.org\r\n\r\nx\r\n"
    rewrite(bundle, files)
    assert verify_bundle(bundle) == [
        "added: items/0005-20261124T000000Z-seq99.eml (not listed in SHA256SUMS)"
    ]


def test_verify_names_a_reordered_journal_even_with_sums_recomputed(bundle: Path) -> None:
    files = files_of(bundle)
    lines = files["journal.jsonl"].decode().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    files["journal.jsonl"] = "".join(lines).encode()
    resum(files)
    rewrite(bundle, files)
    problems = verify_bundle(bundle)
    assert "reordered: journal.jsonl line 3 (seq 4) follows seq 2, expected 3" in problems
    assert (
        "journal: journal.jsonl line 3 (seq 4) does not follow the entry before it "
        "(chain broken)" in problems
    )


def test_verify_catches_a_replaced_item_even_with_sums_and_manifest_rewritten(
    bundle: Path,
) -> None:
    files = files_of(bundle)
    name = item_names(files)[0]
    files[name] = files[name].replace(b"I found you.", b"Lovely day!!")
    m = manifest(files)
    m["items"][0]["sha256"] = hashlib.sha256(files[name]).hexdigest()  # type: ignore[index]
    files["manifest.json"] = json.dumps(m).encode()
    resum(files)
    rewrite(bundle, files)
    problems = verify_bundle(bundle)
    assert f"changed: {name} (SHA-256 differs from journal entry seq 1)" in problems


def test_verify_names_reordered_manifest_items(bundle: Path) -> None:
    files = files_of(bundle)
    m = manifest(files)
    items = m["items"]
    assert isinstance(items, list)
    items[0], items[1] = items[1], items[0]
    files["manifest.json"] = json.dumps(m).encode()
    resum(files)
    rewrite(bundle, files)
    assert any(p.startswith("reordered: items/0002-") for p in verify_bundle(bundle))


def test_verify_calls_an_unreadable_path_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BundleUnreadable, match="does not exist"):
        verify_bundle(tmp_path / "nothing-here")
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BundleUnreadable):
        verify_bundle(tmp_path / "not.zip")


def test_progress_line_redraws_in_place_at_most_every_interval() -> None:
    out = io.StringIO()
    ticks = iter([0.0, 0.05, 0.3, 0.31, 0.32, 0.33])
    line = ProgressLine(out, interval=0.2, clock=lambda: next(ticks))
    for done in (1, 2, 3, 4):
        line("copying items", done, 4)
    line("report.pdf", 1, 4)
    line.close()
    assert out.getvalue() == (
        "\rcopying items 1/4 (25%)\rcopying items 3/4 (75%)\rcopying items 4/4 (100%)"
        "\n\rreport.pdf 1/4 (25%)\n"
    )


def test_verify_names_a_second_file_of_the_same_name_in_a_zip(case: Case) -> None:
    path = export(case, "bundle.zip").path
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("bundle/README.txt", "read me instead")
    assert "added: README.txt (a second file of that name in the zip)" in verify_bundle(path)


def test_verify_reports_a_garbled_manifest_instead_of_crashing(bundle: Path) -> None:
    files = files_of(bundle)
    files["manifest.json"] = b'{"items": ["not an object"], "warnings": 3}'
    resum(files)
    rewrite(bundle, files)
    problems = verify_bundle(bundle)
    assert "manifest: manifest.json has no list of items" in problems
    assert "manifest: manifest.json has no list of warnings" in problems


def test_archived_xmpp_message_shows_the_sender_of_the_forwarded_original() -> None:
    raw = (
        b"<message from='jane@home.example' to='jane@home.example/gm'>"
        b"<result xmlns='urn:xmpp:mam:2'>"
        b"<forwarded xmlns='urn:xmpp:forward:0'><message from='jo@chat.example/x' type='chat'>"
        b"<body>still here &lt;3</body></message></forwarded></result></message>"
    )
    d = describe(raw, channel="xmpp", subject="")
    assert d.sender == "jo@chat.example/x" and d.first_words == "still here <3"


def test_verify_names_journal_entries_cut_from_the_end(bundle: Path) -> None:
    files = files_of(bundle)
    lines = files["journal.jsonl"].decode().splitlines(keepends=True)
    files["journal.jsonl"] = "".join(lines[:-1]).encode()  # the last item's action row
    resum(files)
    rewrite(bundle, files)
    problems = verify_bundle(bundle)
    assert any(
        p.startswith("missing: journal.jsonl does not match manifest.json last_seq 9 (it has 8)")
        for p in problems
    )
