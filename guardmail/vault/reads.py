"""What a vault's readers see (methods of ``Vault``, mixed into it): the journal rows with their
index columns taken from the hashed body (``journal.indexed``), so that editing a stored column
changes no answer; the signed tree heads and their timestamps; what was acted on.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from guardmail.errors import StateError, VaultUnavailable
from guardmail.storage.base import (
    JournalRow,
    Storage,
    StorageUnavailable,
    TimestampRow,
    TreeHeadRow,
)
from guardmail.vault import journal

ROWS_PAGE = 1000  # journal entries read per snapshot by iter_rows


class VaultReads:
    """The reads of the vault of ``tenant`` at ``root``, through ``storage``."""

    root: Path
    tenant: str
    storage: Storage

    def tree_heads(self) -> list[TreeHeadRow]:
        """The tenant's signed tree heads, smallest first."""
        with self.storage.read() as tx:
            return list(tx.tree_heads(self.tenant))

    def last_tree_head(self) -> TreeHeadRow | None:
        with self.storage.read() as tx:
            return tx.tree_head_last(self.tenant)

    def timestamps(self) -> list[TimestampRow]:
        """The tenant's RFC 3161 tokens over its tree heads, smallest tree first."""
        with self.storage.read() as tx:
            return list(tx.timestamps(self.tenant))

    def last_timestamp(self) -> TimestampRow | None:
        with self.storage.read() as tx:
            return tx.timestamp_last(self.tenant)

    def stored_rows(self) -> list[JournalRow]:
        """The journal rows exactly as stored, index columns included (for ``verify``)."""
        with self.storage.read() as tx:
            return list(tx.journal_rows(self.tenant))

    def _indexed(self, row: JournalRow) -> JournalRow:
        try:
            return journal.indexed(row)
        except ValueError as exc:
            raise StateError(
                f"journal entry {row.seq} of vault {self.root} is unreadable ({exc}): "
                "run 'guardmail evidence verify'"
            ) from None

    def rows(self, *, kind: str | None = None) -> list[JournalRow]:
        """The journal in seq order (only ``kind`` when given), index columns from the body."""
        return list(self.iter_rows(kind=kind))

    def iter_rows(self, *, kind: str | None = None, page: int = ROWS_PAGE) -> Iterator[JournalRow]:
        """``rows`` streamed: ``page`` entries at a time, each page one read snapshot (no write
        lock, nothing held between pages), so a long journal is never in memory at once."""
        after = 0
        while True:
            with self.storage.read() as tx:
                batch = list(islice(tx.journal_rows(self.tenant, after_seq=after), page))
            for stored in batch:
                indexed = self._indexed(stored)
                if kind is None or indexed.kind == kind:
                    yield indexed
            if len(batch) < page:
                return
            after = batch[-1].seq

    def row(self, seq: int) -> JournalRow | None:
        with self.storage.read() as tx:
            found = tx.journal_row(self.tenant, seq)
        return None if found is None else self._indexed(found)

    def acted(self, sha256: str, scope: str) -> str | None:
        """The action journaled for these bytes archived within this dedupe scope, or None (not
        archived, or not acted on yet): a source that is handed the same item again (Postfix
        retrying a message whose reply a crash cut off) knows it was handled.
        VaultUnavailable if the journal cannot be read."""
        try:
            with self.storage.read() as tx:
                archived = tx.find_archived(self.tenant, sha256, scope)
                actions = [] if archived is None else tx.find_actions(self.tenant, sha256)
        except (StorageUnavailable, StateError) as exc:
            raise VaultUnavailable(f"vault {self.root} cannot read its journal: {exc}") from exc
        for row in actions:
            body = journal.entry(row)
            if archived is not None and body.get("archived_seq") == archived.seq:
                return str(body.get("action"))
        return None

    def unacted(self) -> list[JournalRow]:
        """The ``archived`` entries that no ``action`` entry answers (a crash in between)."""
        rows = self.rows()
        acted = {journal.entry(r).get("archived_seq") for r in rows if r.kind == "action"}
        return [r for r in rows if r.kind == "archived" and r.seq not in acted]
