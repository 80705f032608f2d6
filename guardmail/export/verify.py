"""Checking an export bundle on its own, without the vault it came from.

Each problem is one line naming the file or journal entry, starting with what is wrong:

    changed:   a file's bytes differ from SHA256SUMS, manifest.json or the journal entry
    missing:   a file named in SHA256SUMS or manifest.json is not there
    added:     a file is there that SHA256SUMS (or, under items/, manifest.json) does not list
    reordered: journal.jsonl entries or manifest.json items are not in journal order
    journal:   an entry is altered or does not follow the one before it (chain broken)
    manifest:  manifest.json is unreadable or disagrees with the journal
    log:       the signed tree head, its signature or an item's inclusion proof fails
               (``guardmail.export.logcheck``), or a trusted timestamp does not check
               (``guardmail.export.stampcheck``)
    dkim:      a signature that passed at receipt fails from its key snapshot, or a snapshot
               is altered (``guardmail.export.dkimfiles``)

The three layers back each other up: rewriting SHA256SUMS after changing a file still leaves the
manifest and the journal entry naming the old SHA-256, and rewriting those breaks the chain.
``verify_bundle`` raises BundleUnreadable when the path is not a readable folder or zip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardmail.export import JOURNAL, MANIFEST, SUMS, BundleUnreadable
from guardmail.export.dkimfiles import CHECKS, check_dkim
from guardmail.export.logcheck import bundle_head, check_log
from guardmail.export.stampcheck import check_stamps
from guardmail.storage.base import TreeHeadRow
from guardmail.vault.journal import chain_hash
from guardmail.vault.signing import public_pem

OLD_FORMAT = "guardmail-evidence-bundle/1"
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ITEM_NAME = re.compile(r"^items/(\d+)-[0-9TZ]+-seq(\d+)\.\w+$")


class _Files:
    """A bundle's files by bundle-relative name, from a folder or from a zip's one folder."""

    def __init__(self, path: Path) -> None:
        self._zip: zipfile.ZipFile | None = None
        self.duplicates: list[str] = []
        self._root = path
        self._prefix = ""
        try:
            if path.is_dir():
                self.names = sorted(self._walk(path))
            elif zipfile.is_zipfile(path):
                self._zip = zipfile.ZipFile(path)
                members = [i.filename for i in self._zip.infolist() if not i.is_dir()]
                self._prefix = _zip_prefix(members)
                self.names = sorted(m[len(self._prefix) :] for m in members)
                # A zip can hold one name twice, and unzip tools differ on which one wins.
                counts = Counter(self.names)
                self.duplicates = sorted(n for n, c in counts.items() if c > 1)
            else:
                what = "does not exist" if not path.exists() else "is neither a folder nor a zip"
                raise BundleUnreadable(f"{path} {what}")
        except (OSError, zipfile.BadZipFile) as exc:
            raise BundleUnreadable(f"{path} cannot be read: {exc}") from exc

    @staticmethod
    def _walk(root: Path) -> Iterator[str]:
        def fail(exc: OSError) -> None:
            raise exc

        for here, _, files in os.walk(root, onerror=fail):
            rel = Path(here).relative_to(root)
            for name in files:
                yield (rel / name).as_posix()

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._prefix + name)
        return (self._root / name).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _zip_prefix(members: list[str]) -> str:
    """The one top-level folder a bundle zip holds ("" if SHA256SUMS sits at the top)."""
    if SUMS in members:
        return ""
    tops = {m.split("/", 1)[0] for m in members if "/" in m}
    if len(tops) == 1:
        return f"{tops.pop()}/"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    seq: int
    kind: str
    sha256: str | None
    prev_hash: str
    hash: str
    body: str
    files: frozenset[str] = frozenset()  # a note's attached files' SHA-256


def _parse_sums(text: str, problems: list[str]) -> dict[str, str]:
    listed: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        m = _SUMS_LINE.match(line)
        if not m:
            problems.append(f"changed: {SUMS} line {n} is not a checksum line")
            continue
        name = m.group(2)
        if name in listed:
            problems.append(f"added: {name} is listed twice in {SUMS}")
        listed[name] = m.group(1).lower()
    return listed


def _check_journal(data: bytes, problems: list[str]) -> dict[int, _Entry]:
    """Recompute the chain of journal.jsonl; entries by seq."""
    entries: dict[int, _Entry] = {}
    prev_hash: str | None = None
    prev_seq: int | None = None
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        try:
            row = json.loads(line)
            seq, prev, digest = row["seq"], row["prev_hash"], row["hash"]
            # A withheld entry (about someone this bundle is not for) has no body: its hash
            # stands for it, and the entry after it must name that hash as its prev_hash.
            body = row["body"] if "withheld" not in row else None
            fields = json.loads(body) if body is not None else {"seq": seq, "kind": "withheld"}
            if not (isinstance(seq, int) and isinstance(fields, dict)):
                raise TypeError("seq is not a number or body is not an object")
            if not (_HEX64.match(str(prev)) and _HEX64.match(str(digest))):
                raise ValueError("prev_hash or hash is not 64 hex digits")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"journal: {JOURNAL} line {n} is not a journal entry ({exc})")
            prev_hash = prev_seq = None
            continue
        where = f"{JOURNAL} line {n} (seq {seq})"
        if prev_seq is not None and seq != prev_seq + 1:
            problems.append(f"reordered: {where} follows seq {prev_seq}, expected {prev_seq + 1}")
        if prev_hash is not None and prev != prev_hash:
            problems.append(f"journal: {where} does not follow the entry before it (chain broken)")
        if body is None:
            pass
        elif chain_hash(str(prev), str(body)) != digest:
            problems.append(f"journal: {where} is altered (hash mismatch)")
        elif fields.get("seq") != seq:
            problems.append(f"reordered: {where} holds the body of entry {fields.get('seq')}")
        sha = fields.get("sha256")
        listed_files = fields.get("files")
        attached = listed_files if isinstance(listed_files, list) else []
        entries[seq] = _Entry(
            seq=seq,
            kind=str(fields.get("kind")),
            sha256=sha if isinstance(sha, str) else None,
            prev_hash=str(prev),
            hash=str(digest),
            body="" if body is None else str(body),
            files=frozenset(str(f.get("sha256")) for f in attached if isinstance(f, dict)),
        )
        prev_hash, prev_seq = str(digest), seq
    return entries


def _check_manifest(
    manifest: dict[str, Any],
    journal: dict[int, _Entry],
    hashes: dict[str, str],
    problems: list[str],
) -> set[str]:
    """Items and warnings against the journal; the file names the manifest accounts for."""
    named: set[str] = set()
    last_seq = 0
    for position, item in enumerate(_objects(manifest, "items", problems), start=1):
        file, seq, sha = str(item.get("file")), item.get("seq"), item.get("sha256")
        named.add(file)
        m = _ITEM_NAME.match(file)
        if not isinstance(seq, int) or m is None or int(m.group(2)) != seq:
            problems.append(f"manifest: item {file} does not name its journal seq {seq}")
            continue
        if int(m.group(1)) != position or seq <= last_seq:
            problems.append(
                f"reordered: {file} is item {position} in {MANIFEST} after seq {last_seq}"
            )
        last_seq = max(last_seq, seq)
        _against_journal(file, seq, sha, "archived", journal, hashes, problems)
    for warning in _objects(manifest, "warnings", problems):
        file, seq = str(warning.get("file")), warning.get("seq")
        named.add(file)
        if isinstance(seq, int):
            _against_journal(file, seq, warning.get("sha256"), "warning", journal, hashes, problems)
    for note in manifest.get("notes") or []:
        if isinstance(note, dict) and isinstance(note.get("files"), list):
            for f in note["files"]:
                if isinstance(f, dict):
                    named.add(str(f.get("file")))
                    _note_file(str(f.get("file")), note.get("seq"), journal, hashes, problems)
    return named


def _note_file(
    file: str, seq: object, journal: dict[int, _Entry], hashes: dict[str, str], problems: list[str]
) -> None:
    """A note's attached file is one the journaled note names, byte for byte."""
    entry = journal.get(seq) if isinstance(seq, int) else None
    if entry is None or entry.kind != "note":
        problems.append(f"manifest: {file}: no note entry seq {seq} in {JOURNAL}")
        return
    actual = hashes.get(file)
    if actual is not None and actual not in entry.files:
        problems.append(f"changed: {file} (SHA-256 not among the files of note seq {seq})")


def _check_ends(manifest: dict[str, Any], journal: dict[int, _Entry], problems: list[str]) -> None:
    """journal.jsonl starts and ends where manifest.json says: no rows cut from either end."""
    ends = manifest.get("journal")
    if not isinstance(ends, dict):
        problems.append(f"manifest: {MANIFEST} does not say which journal entries it covers")
        return
    rows = list(journal.values())
    first, last = (rows[0], rows[-1]) if rows else (None, None)
    expected = (
        ("first_seq", first.seq if first else None),
        ("first_prev_hash", first.prev_hash if first else None),
        ("last_seq", last.seq if last else None),
        ("last_hash", last.hash if last else None),
    )
    for key, actual in expected:
        if ends.get(key) != actual:
            problems.append(
                f"missing: {JOURNAL} does not match {MANIFEST} {key} {ends.get(key)} "
                f"(it has {actual}): entries cut or added"
            )


def _objects(manifest: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, Any]]:
    value = manifest.get(key)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"manifest: {MANIFEST} has no list of {key}")
        return []
    return value


def _against_journal(
    file: str,
    seq: int,
    sha: object,
    kind: str,
    journal: dict[int, _Entry],
    hashes: dict[str, str],
    problems: list[str],
) -> None:
    entry = journal.get(seq)
    if entry is None or entry.kind != kind:
        problems.append(f"manifest: {file}: no {kind} entry seq {seq} in {JOURNAL}")
        return
    if sha != entry.sha256:
        problems.append(f"manifest: {file}: {MANIFEST} and journal entry seq {seq} disagree")
    actual = hashes.get(file)
    if actual is not None and actual != entry.sha256:
        problems.append(f"changed: {file} (SHA-256 differs from journal entry seq {seq})")


def verify_bundle(path: Path) -> list[str]:
    """Every problem found in the bundle at ``path``; empty if it is intact."""
    files = _Files(path)
    try:
        return _verify(files)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleUnreadable(f"{path} cannot be read: {exc}") from exc
    finally:
        files.close()


def handed_out_head(path: Path) -> tuple[TreeHeadRow, str]:
    """The signed tree head an exported bundle carries, with its key's PEM text; BundleUnreadable
    if the path is not a bundle with a signed head whose signature verifies."""
    files = _Files(path)
    try:
        head, public = bundle_head(files.read, set(files.names))
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise BundleUnreadable(f"{path}: no signed tree head to check against ({exc})") from None
    finally:
        files.close()
    return head, public_pem(public)


def _verify(files: _Files) -> list[str]:
    problems = [
        f"added: {name} (a second file of that name in the zip)" for name in files.duplicates
    ]
    present = set(files.names)
    hashes = {name: hashlib.sha256(files.read(name)).hexdigest() for name in files.names}
    listed: dict[str, str] = {}
    if SUMS in present:
        listed = _parse_sums(files.read(SUMS).decode("utf-8", "replace"), problems)
    else:
        problems.append(f"missing: {SUMS}")
    for name, digest in listed.items():
        if name not in present:
            problems.append(f"missing: {name} (listed in {SUMS})")
        elif hashes[name] != digest:
            problems.append(f"changed: {name} (SHA-256 differs from {SUMS})")
    for name in sorted(present - set(listed) - {SUMS}):
        problems.append(f"added: {name} (not listed in {SUMS})")

    journal: dict[int, _Entry] = {}
    if JOURNAL in present:
        journal = _check_journal(files.read(JOURNAL), problems)
    elif JOURNAL not in listed:
        problems.append(f"missing: {JOURNAL}")
    if MANIFEST not in present:
        if MANIFEST not in listed:
            problems.append(f"missing: {MANIFEST}")
        return problems
    try:
        manifest = json.loads(files.read(MANIFEST))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        problems.append(f"manifest: {MANIFEST} cannot be read ({exc})")
        return problems
    _check_ends(manifest, journal, problems)
    named = _check_manifest(manifest, journal, hashes, problems)
    if manifest.get("format") != OLD_FORMAT:  # a bundle from before the signed log has none
        wanted = {
            str(o.get("file")): o.get("seq")
            for key in ("items", "warnings")
            for o in _objects(manifest, key, [])
        }
        bodies = {seq: e.body for seq, e in journal.items()}
        problems.extend(check_log(files.read, present, bodies, wanted))
        try:
            head, public = bundle_head(files.read, present)
        except ValueError:
            pass  # check_log said what is wrong with the head
        else:
            problems.extend(check_stamps(files.read, present, head, public))
    if isinstance(manifest.get("dkim"), dict) and CHECKS not in present and CHECKS not in listed:
        problems.append(f"missing: {CHECKS} (named in {MANIFEST})")
    problems.extend(check_dkim(files.read, present))
    for name in sorted(named - present):
        if name not in listed:  # else already reported as missing
            problems.append(f"missing: {name} (named in {MANIFEST})")
    for name in sorted(n for n in present - named if n.startswith(("items/", "notes/"))):
        if name in listed:  # else already reported as added
            problems.append(f"added: {name} (not in {MANIFEST})")
    return problems
