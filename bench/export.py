"""Seconds to export N archived items as a folder and as a zip, with the PDF and HTML reports.

Archives N synthetic items (default 20,000; ``--quick`` 500) into a temporary vault through the
real ``Vault.put`` path: mail from three offenders over about four months, one in ten an XMPP
stanza, bodies of 0.5 to 8 KB, an ``action`` entry after each and one journaled warning. Then
times ``write_bundle`` to a folder and to a zip, breaks the folder export into stages, checks
the bundle with ``verify_bundle``, and prints sizes. The baseline beside it is the floor: reading
every blob, hashing it and writing it to a folder, with no report at all.

    python bench/export.py            # 20,000 items (archiving them takes a minute or two)
    python bench/export.py --quick    # 500 items (CI)
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from guardmail import __version__
from guardmail.core.item import Channel, Identity, Item, mail_item
from guardmail.core.rules import Action, OffenderRule, RuleSet, decide
from guardmail.export.bundle import REPORT_HTML, REPORT_PDF, write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.export.verify import verify_bundle
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

START = datetime(2026, 7, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORDS = "you cannot hide from me I know where you live answer now why do you ignore".split()

RULES = RuleSet(
    [
        OffenderRule(name="Jo Stalker", addresses=("jo@stalk.example",)),
        OffenderRule(name="Burner", domains=("burner.example",), action=Action.BLOCK),
        OffenderRule(name="Chat Pest", jids=("pest@chat.example",)),
    ]
)


def synthetic(i: int, rng: random.Random, when: datetime) -> Item:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(80, 1400)))
    if i % 10 == 9:
        raw = (
            f"<message from='pest@chat.example/phone' to='jane@home.example' type='chat' "
            f"id='m{i}'><body>{body}</body></message>"
        ).encode()
        return Item(
            raw=raw,
            channel=Channel.XMPP,
            tenant="bench",
            account="xmpp",
            source_ref=f"xmpp/{i}",
            received_at=when,
            identities=(Identity(source="jid", address="pest@chat.example"),),
        )
    sender = "Jo <jo@stalk.example>" if i % 3 else f"anon{i}@burner.example"
    raw = (
        f"Return-Path: <{sender.split('<')[-1].rstrip('>')}>\r\n"
        f"Received: from mx.stalk.example by mx.home.example; {when:%d %b %Y %H:%M:%S +0000}\r\n"
        f"From: {sender}\r\nTo: Jane <jane@home.example>\r\nSubject: message number {i}\r\n"
        f"Message-ID: <bench{i}@stalk.example>\r\nDate: {when:%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    return mail_item(raw, tenant="bench", account="home", source_ref=f"new/{i}", received_at=when)


def archive(vault: Vault, n: int) -> None:
    rng = random.Random(7)
    step = (NOW - START) / n
    for i in range(n):
        when = START + step * i
        item = synthetic(i, rng, when)
        verdict = decide(item.identities, RULES, now=when)
        receipt = vault.put(
            item.raw,
            source_ref=item.source_ref,
            metadata=evidence_metadata(item, verdict),
            now=when,
        )
        vault.record(
            "action",
            {"archived_seq": receipt.seq, "action": str(verdict.action), "done": "moved"},
            now=when,
            sha256=receipt.sha256,
            source_ref=item.source_ref,
        )
        if i == 5:
            sent = (
                b"From: jane@home.example\r\nTo: jo@stalk.example\r\nSubject: Stop\r\n\r\nStop.\r\n"
            )
            sha = hashlib.sha256(sent).hexdigest()
            vault.blobs.put(sent, sha)
            vault.record(
                "warning",
                {"offender": "Jo Stalker", "to": "jo@stalk.example", "sent_at": when.isoformat()},
                now=when,
                sha256=sha,
            )


def floor(vault: Vault, out: Path) -> float:
    """Copy and hash every archived blob into a folder: the least any export must do."""
    t0 = time.perf_counter()
    out.mkdir()
    for row in vault.rows(kind="archived"):
        assert row.sha256
        raw = vault.blobs.get(row.sha256)
        hashlib.sha256(raw).hexdigest()
        (out / row.sha256).write_bytes(raw)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="500 items")
    args = parser.parse_args()
    n = 500 if args.quick else args.items
    work = Path(tempfile.mkdtemp(prefix="guardmail-bench-export-"))
    try:
        storage = SQLiteStorage(work / "state" / "guardmail.sqlite3")
        vault = Vault(work / "state" / "vault" / "bench", storage, "bench")
        t0 = time.perf_counter()
        archive(vault, n)
        t_archive = time.perf_counter() - t0
        rows = vault.rows()
        evidence = select(rows, tenant="bench", criteria=Criteria())

        stages: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            stages.setdefault(stage, time.perf_counter())

        t0 = time.perf_counter()
        folder = write_bundle(
            vault, evidence, work / "folder", now=NOW, version=__version__, progress=progress
        )
        t_folder = time.perf_counter() - t0
        t0 = time.perf_counter()
        zipped = write_bundle(vault, evidence, work / "bundle.zip", now=NOW, version=__version__)
        t_zip = time.perf_counter() - t0
        t0 = time.perf_counter()
        problems = verify_bundle(work / "folder")
        t_verify = time.perf_counter() - t0
        t_floor = floor(vault, work / "floor")
        copied = stages.get("report.pdf", t0) - stages.get("copying items", t0)
        pdf_bytes = (work / "folder" / REPORT_PDF).read_bytes()
        pdf = len(pdf_bytes)
        pages = len(re.findall(rb"/Type /Page\b(?!s)", pdf_bytes))
        html = (work / "folder" / REPORT_HTML).stat().st_size

        print(f"items: {n} ({len(rows)} journal entries), archived in {t_archive:.1f} s")
        print(f"{'':<34}{'seconds':>9}")
        print(f"{'baseline: copy + hash blobs only':<34}{t_floor:>9.2f}")
        print(f"{'export to folder (all reports)':<34}{t_folder:>9.2f}")
        print(f"{'  items, manifest, chart, HTML':<34}{copied:>9.2f}")
        print(f"{'  report.pdf':<34}{t_folder - copied:>9.2f}")
        print(f"{'export to zip (all reports)':<34}{t_zip:>9.2f}")
        print(f"{'verify the folder bundle':<34}{t_verify:>9.2f}")
        print(f"sizes: folder {folder.size / 1e6:.1f} MB, zip {zipped.size / 1e6:.1f} MB, ", end="")
        print(f"report.pdf {pdf / 1e6:.1f} MB ({pages} pages), report.html {html / 1e6:.1f} MB")
        storage.close()
        if problems:
            print("verify found problems:", *problems[:5], sep="\n  ", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
