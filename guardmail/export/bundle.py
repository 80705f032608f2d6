"""Writing an export bundle from a vault (layout and invariants: see ``guardmail.export``).

Contracts:
- ``write_bundle`` re-hashes every blob it copies and raises ExportError, leaving nothing at the
  target path, if a blob is missing or its bytes are not the journaled SHA-256.
- ``SHA256SUMS`` lists every other file, in the order written; ``manifest.json`` and
  ``journal.jsonl`` are UTF-8 JSON with sorted keys.
- After the bundle is in place the vault keeps a copy of its SHA256SUMS (as a blob) and journals
  an ``export`` entry naming that file's SHA-256: the owner can later show which bundle was
  handed over.
- Each item and warning carries an inclusion proof against the vault's latest signed tree head
  (``guardmail.export.proofs``), sealed first if the journal has entries no head covers.
- The RFC 3161 tokens that date the exported entries go with them (``guardmail.export.stamps``).
- Time is a parameter: ``now`` stamps the report, the manifest and the journal entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from guardmail.errors import StateError, VaultUnavailable
from guardmail.export import FORMAT, JOURNAL, MANIFEST, README, SUMS, ExportError
from guardmail.export.abuse_files import AbuseReports
from guardmail.export.chart import timeline_png
from guardmail.export.details import Details, describe, message_text, stanza_text, subject_of
from guardmail.export.dkimfiles import CHECKS, dkim_files, dkim_readme
from guardmail.export.evidence import Evidence
from guardmail.export.html import render_html
from guardmail.export.pdf import render_pdf
from guardmail.export.proofs import log_files, log_readme
from guardmail.export.readme import readme, verification
from guardmail.export.sink import Sink, ZipSink, open_sink
from guardmail.export.stamps import stamp_files, stamps_readme
from guardmail.export.summary import NoteView, WarningView, build
from guardmail.export.thumbs import Thumbs
from guardmail.vault.store import Vault

REPORT_PDF, REPORT_HTML = "report.pdf", "report.html"

# progress(stage, done, total): called as items are copied and as the PDF lays them out.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleResult:
    path: Path
    items: int
    warnings: int
    sums_sha256: str  # SHA-256 of the bundle's SHA256SUMS file
    journal_seq: int  # seq of the ``export`` entry recorded in the vault
    size: int  # bytes on disk (the zip, or the folder's files)


def read_blob(vault: Vault, sha256: str, what: str) -> bytes:
    """The blob's bytes, checked against its name (``BlobStore.get``); ExportError if not."""
    try:
        return vault.blobs.get(sha256)
    except StateError as exc:
        raise ExportError(
            f"{what}: {exc}; "
            "run 'guardmail evidence verify' and export nothing until it is resolved"
        ) from None
    except OSError as exc:
        raise ExportError(f"{what}: blob {sha256} cannot be read: {exc}") from exc


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode()


def manifest(evidence: Evidence, *, now: datetime, version: str) -> dict[str, Any]:
    first = evidence.journal[0] if evidence.journal else None
    last = evidence.journal[-1] if evidence.journal else None
    c = evidence.criteria
    return {
        "format": FORMAT,
        "generated_at": now.isoformat(),
        "generator": f"guardmail {version}",
        "tenant": evidence.tenant,
        "offenders": list(evidence.offenders),
        "criteria": {
            "offenders": list(c.offenders),
            "since": c.since.isoformat() if c.since else None,
            "until": c.until.isoformat() if c.until else None,
        },
        "journal": {
            "file": JOURNAL,
            "first_seq": first.seq if first else None,
            "last_seq": last.seq if last else None,
            "first_prev_hash": first.prev_hash if first else None,
            "last_hash": last.hash if last else None,
            "vault_head_seq": evidence.head.seq if evidence.head else None,
            "vault_head_hash": evidence.head.hash if evidence.head else None,
        },
        "items": [
            {
                "file": i.file,
                "seq": i.seq,
                "sha256": i.sha256,
                "size": i.size,
                "received_at": i.received_at.isoformat(),
                "archived_at": i.archived_at,
                "channel": i.channel,
                "account": i.account,
                "source_ref": i.source_ref,
                "offender": i.offender,
                "rule": i.rule,
                "header": i.header,
                "action": i.action,
                "done": i.done,
                "subject": i.subject,
                "message_id": i.message_id,
                "date": i.date,
            }
            # only for an imported item: a live one's entry is as before
            | ({"imported": i.imported} if i.imported else {})
            for i in evidence.items
        ],
        "warnings": [
            {
                "file": w.file,
                "seq": w.seq,
                "sha256": w.sha256,
                "offender": w.offender,
                "to": w.to,
                "sent_at": w.sent_at,
                "message_id": w.message_id,
            }
            for w in evidence.warnings
        ],
        "notes": [
            {
                "seq": n.note.seq,
                "time": n.note.time.isoformat(),
                "offender": n.note.offender or None,
                "files": [
                    {"file": name, "name": f.name, "sha256": f.sha256, "size": f.size}
                    for name, f in n.files
                ],
            }
            for n in evidence.notes
        ],
        "reports": [REPORT_PDF, REPORT_HTML],
    }


WITHHELD = "not part of this export: only its hashes are given"


def journal_lines(evidence: Evidence) -> bytes:
    """The run of journal rows, one JSON object a line; rows about others without their body."""
    lines = []
    for r in evidence.journal:
        line: dict[str, Any] = {"seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash}
        if evidence.withheld(r):
            line["withheld"] = WITHHELD
        else:
            line["body"] = r.body
        lines.append(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    return "".join(lines).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOptions:
    """What the report says beyond the evidence: the case settings, and whether text is shown."""

    bodies: bool = True  # False: a summary copy without the messages' text
    protected: tuple[tuple[str, str], ...] = ()  # (label, value): name, reference numbers


def _fill(
    sink: Sink,
    vault: Vault,
    evidence: Evidence,
    now: datetime,
    version: str,
    progress: Progress,
    options: ReportOptions,
) -> None:
    total = len(evidence.items)
    details: list[Details] = []
    thumbs = Thumbs() if options.bodies else None
    abuse = AbuseReports()
    for n, item in enumerate(evidence.items, start=1):
        raw = read_blob(vault, item.sha256, f"item seq {item.seq}")
        sink.add(item.file, raw)
        abuse.add(item, raw)
        details.append(
            describe(
                raw,
                channel=item.channel,
                subject=item.subject,
                bodies=options.bodies,
                thumbs=thumbs,
            )
        )
        progress("copying items", n, total)
    warnings: list[WarningView] = []
    for w in evidence.warnings:
        raw = read_blob(vault, w.sha256, f"warning seq {w.seq}")
        sink.add(w.file, raw)
        if w.channel == "xmpp":
            view = WarningView(warning=w, subject="", text=stanza_text(raw))
        else:
            view = WarningView(warning=w, subject=subject_of(raw), text=message_text(raw))
        warnings.append(view)
    notes: list[NoteView] = []
    for kept in evidence.notes:
        for name, f in kept.files:
            sink.add(name, read_blob(vault, f.sha256, f"note seq {kept.note.seq}: {f.name}"))
        notes.append(
            NoteView(
                seq=kept.note.seq,
                time=kept.note.time,
                text=kept.note.text,
                files=tuple((name, f.sha256, f.size) for name, f in kept.files),
                kind=kept.note.kind,
                to=kept.note.to,
                offender=kept.note.offender,
            )
        )
    reports = abuse.files(
        read=lambda i: read_blob(vault, i.sha256, f"item seq {i.seq}"), now=now, version=version
    )
    for r in reports:
        sink.add(r.file, r.data)
    sink.add(JOURNAL, journal_lines(evidence))
    head, key_fingerprint, signed = log_files(vault, evidence)
    signed |= (stamped := stamp_files(vault, evidence, head))
    for name, data in signed.items():
        sink.add(name, data)
    dkim = dkim_files(vault, evidence)
    for name, data in sorted(dkim.items()):
        sink.add(name, data)
    body = manifest(evidence, now=now, version=version)
    body["log"] = {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "signed_at": head.time,
        "key_fingerprint": key_fingerprint,
        "files": sorted(signed),
    }
    if dkim:
        body["dkim"] = {"checks": CHECKS, "keys": sum(1 for n in dkim if n != CHECKS)}
    body["abuse_reports"] = [
        {
            "file": r.file,
            "offender": r.offender,
            "domain": r.domain,
            "to": r.to or None,
            "items": r.items,
            "form": r.form,
            "sha256": hashlib.sha256(r.data).hexdigest(),
        }
        for r in reports
    ]
    sink.add(MANIFEST, _json(body))
    stamps = stamps_readme(stamped)
    signed_log = (
        log_readme(head, key_fingerprint)
        + stamps
        + (dkim_readme(7 if stamps else 6) if dkim else "")
    )
    report = build(
        evidence,
        details=details,
        warnings=warnings,
        now=now,
        version=version,
        verification=verification(evidence, signed_log=signed_log),
        bodies=options.bodies,
        protected=options.protected,
        notes=tuple(notes),
    )
    sent = (w.sent for w in report.warnings)
    chart = timeline_png(report.per_day, warned=tuple(d.date() for d in sent if d is not None))
    sink.add(REPORT_HTML, render_html(report, chart_png=chart).encode())
    progress("report.pdf", 0, len(evidence.items))  # the cover and item table come first
    pdf = render_pdf(report, chart_png=chart, progress=lambda d, t: progress("report.pdf", d, t))
    sink.add(REPORT_PDF, pdf)
    text = readme(
        evidence,
        generated_at=f"{now:%Y-%m-%d %H:%M} UTC",
        version=version,
        signed_log=signed_log,
    )
    sink.add(README, text.encode())


def sums_file(sums: list[tuple[str, str]]) -> bytes:
    """``sha256sum`` output format: 64 hex digits, two spaces, the file name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sums).encode()


def write_bundle(
    vault: Vault,
    evidence: Evidence,
    out: Path,
    *,
    now: datetime,
    version: str,
    progress: Progress | None = None,
    options: ReportOptions | None = None,
    by: Mapping[str, Any] | None = None,
) -> BundleResult:
    """Write ``evidence`` as a bundle at ``out`` (a zip if it ends in .zip) and journal it.

    FileExistsError if ``out`` exists; ExportError if a blob is missing or altered.
    """
    try:
        vault.seal(now=now)  # a head over every exported entry, even in a journal never sealed
    except VaultUnavailable as exc:
        raise ExportError(f"cannot sign a tree head for the export: {exc}") from exc
    sink = open_sink(out, now)
    try:
        _fill(
            sink,
            vault,
            evidence,
            now,
            version,
            progress or (lambda stage, done, total: None),
            options or ReportOptions(),
        )
        sums = sums_file(sink.sums)
        sink.add(SUMS, sums)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    sums_sha = hashlib.sha256(sums).hexdigest()
    fields: dict[str, Any] = {
        "bundle": str(out.absolute()),
        "form": "zip" if isinstance(sink, ZipSink) else "folder",
        "items": len(evidence.items),
        "warnings": len(evidence.warnings),
        "offenders": list(evidence.offenders),
        "first_seq": evidence.journal[0].seq if evidence.journal else None,
        "last_seq": evidence.journal[-1].seq if evidence.journal else None,
        "since": evidence.criteria.since.isoformat() if evidence.criteria.since else None,
        "until": evidence.criteria.until.isoformat() if evidence.criteria.until else None,
        "sha256sums": sums_sha,
    }
    if by is not None:
        fields["by"] = dict(by)  # who made it (guardmail.vault.custody)
    if isinstance(sink, ZipSink):
        with out.open("rb") as f:
            fields["zip_sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
        size = out.stat().st_size
    else:
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    try:
        vault.blobs.put(sums, sums_sha)
        row = vault.record("export", fields, now=now, sha256=sums_sha)
    except (OSError, VaultUnavailable) as exc:
        raise ExportError(
            f"the bundle {out} is complete, but the vault could not journal the export: {exc}"
        ) from exc
    return BundleResult(
        path=out,
        items=len(evidence.items),
        warnings=len(evidence.warnings),
        sums_sha256=sums_sha,
        journal_seq=row.seq,
        size=size,
    )
