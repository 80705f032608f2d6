"""One import run: read a source, judge each item, archive the offenders' (or all), record.

Invariants:
- Imports only archive: no actor is called, no warning sent, the source left unchanged. Each
  new entry is followed, in the same transaction, by one ``action`` entry saying so
  (``action: imported``), so that no restart's reconcile mistakes it for an action a crash cut.
- Provenance: every entry carries ``imported`` (what, which item, when, and that guardmail
  did not receive it); ``received_at`` is the time of the import, never a time guardmail had
  not seen the item yet.
- Judged by the same rules as live items (``Pipeline.judge``); ``everything`` archives the
  items the rules pass too.
- Nothing twice: an item's key (``Found.key``) is recorded in the progress table (the storage's
  cursors, source ``import:KIND:NAME``) in the same transaction as its entries, and a key found
  there is skipped; and the vault's dedupe scope ``import`` archives the same bytes once across
  every import (a file moved or copied and imported again adds nothing).
- Commits are batched (``batch_items`` items or ``batch_bytes`` bytes a transaction): a kill
  loses at most the batch in flight, which the next run takes again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from guardmail import faults
from guardmail.core.item import Item, Summary, mail_item
from guardmail.core.rules import Action, Verdict
from guardmail.imports import Found
from guardmail.imports.progress import Counts, Progress
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.storage.base import JournalRow, Transaction
from guardmail.vault import journal
from guardmail.vault.store import Archive, Receipt

SCOPE = "import"
DONE = "imported, not acted on: evidence from before guardmail; the source is left unchanged"
NOTE = "imported from {what} at {at}; not received by guardmail"


class Source(Protocol):
    """A reader: ``kind`` (mbox, eml, maildir, imap, gajim), ``name`` (the file, folder or
    account/folder as provenance names it), ``total`` (its size in bytes once known)."""

    kind: str
    name: str
    total: int | None

    def items(self) -> Iterator[Found]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    tenant: str
    account: str
    everything: bool = False
    batch_items: int = 500
    batch_bytes: int = 32 * 1024 * 1024


def progress_key(source: Source) -> str:
    return f"import:{source.kind}:{source.name}"


def _batches(found: Iterable[Found], items: int, size: int) -> Iterator[list[Found]]:
    batch: list[Found] = []
    held = 0
    for f in found:
        batch.append(f)
        held += len(f.raw or b"")
        if len(batch) >= items or held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def _from_matched(verdict: Verdict) -> bool:
    """Whether a rule of the verdict's offender matched the From address itself."""
    return any(m.header == "From" and m.offender == verdict.offender for m in verdict.matches)


class _Run:
    def __init__(self, source: Source, pipeline: Pipeline, settings: Settings) -> None:
        self.source = source
        self.pipeline = pipeline
        self.settings = settings
        self.key = progress_key(source)
        self.counts = Counts()

    def item(self, f: Found, raw: bytes, ref: str) -> Item:
        s = self.settings
        now = self.pipeline.clock()
        if f.identities is None:
            return mail_item(
                raw,
                tenant=s.tenant,
                account=s.account,
                source_ref=ref,
                received_at=now,
                meta=f.meta,
            )
        return Item(
            raw=raw,
            channel=f.channel,
            tenant=s.tenant,
            account=s.account,
            source_ref=ref,
            received_at=now,
            identities=f.identities,
            meta=f.meta,
            summary=f.summary or Summary(),
        )

    def done_before(self, batch: Sequence[Found]) -> set[str]:
        vault = self.pipeline.vault
        with vault.storage.read() as tx:
            return {f.key for f in batch if tx.cursor(vault.tenant, self.key, f.key) is not None}

    def batch(self, batch: Sequence[Found]) -> None:
        c = self.counts
        skip = self.done_before(batch)
        chosen: list[tuple[Found, Verdict]] = []
        judged: list[Item] = []
        archives: list[Archive] = []
        at = self.pipeline.clock().isoformat()
        what = f"{self.source.kind} {self.source.name}"
        for f in batch:
            c.items += 1
            c.bytes += f.size
            c.position = max(c.position, f.position)
            if f.key in skip:
                c.already += 1
                continue
            if f.raw is None:
                c.too_large += 1
                event("import.too_large", level=logging.WARNING, item=f.key, size=f.size)
                continue
            ref = f"{self.key}#{f.key}"
            item = self.item(f, f.raw, ref)
            verdict = self.pipeline.judge(item)
            if verdict.action is Action.PASS and not self.settings.everything:
                continue
            meta = evidence_metadata(item, verdict)
            meta["imported"] = {
                "from": what,
                "item": f.key,
                "at": at,
                "note": NOTE.format(what=what, at=at),
            }
            chosen.append((f, verdict))
            judged.append(item)
            archives.append(Archive(raw=f.raw, source_ref=ref, metadata=meta, scope=SCOPE))
        if not archives:
            return
        receipts = self.pipeline.vault.put_many(
            archives, now=self.pipeline.clock(), within=lambda tx, r: self.record(tx, chosen, r)
        )
        faults.reached("import.committed")
        for r in receipts:
            if r.duplicate:
                c.already += 1
            else:
                c.archived += 1
        self.learn(judged, [v for _, v in chosen], receipts)

    def learn(
        self, items: Sequence[Item], verdicts: Sequence[Verdict], receipts: Sequence[Receipt]
    ) -> None:
        """The alias linker learns the offenders' items archived now for the first time, as it
        learns live ones: months of earlier messages are what it needs most."""
        linker = self.pipeline.linker
        fresh = [
            (item, v.offender, r.sha256, _from_matched(v))
            for item, v, r in zip(items, verdicts, receipts, strict=True)
            if v.offender is not None and not r.duplicate
        ]
        if linker is not None and fresh:
            linker.learn(fresh, now=self.pipeline.clock())

    def record(
        self, tx: Transaction, chosen: Sequence[tuple[Found, Verdict]], receipts: Sequence[Receipt]
    ) -> JournalRow | None:
        """Inside the archive's transaction: the action entries and the progress marks."""
        tenant = self.pipeline.vault.tenant
        now = self.pipeline.clock()
        last = None
        for (f, verdict), r in zip(chosen, receipts, strict=True):
            if not r.duplicate:
                last = journal.append(
                    tx,
                    tenant=tenant,
                    kind="action",
                    fields={"archived_seq": r.seq, "action": "imported", "done": DONE},
                    now=now,
                    sha256=r.sha256,
                    source_ref=f"{self.key}#{f.key}",
                )
            mark = {"sha256": r.sha256, "seq": r.seq, "verdict": str(verdict.action)}
            tx.set_cursor(tenant, self.key, f.key, json.dumps(mark, sort_keys=True))
        return last


def run_import(
    source: Source, *, pipeline: Pipeline, settings: Settings, progress: Progress
) -> Counts:
    """Import every item of ``source`` (see the module docstring); the counts at the end.
    VaultUnavailable if the vault cannot take a batch (what was committed before stays)."""
    run = _Run(source, pipeline, settings)
    for batch in _batches(source.items(), settings.batch_items, settings.batch_bytes):
        run.batch(batch)
        progress.show(run.counts, total=source.total)
    progress.show(run.counts, total=source.total, final=True)
    c = run.counts
    event(
        "import.done",
        tenant=settings.tenant,
        source=run.key,
        items=c.items,
        archived=c.archived,
        already=c.already,
        too_large=c.too_large,
    )
    return c
