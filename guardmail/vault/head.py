"""The HEAD witness of a tenant's vault, and the TAMPERED notes of a HEAD found missing or broken
(methods of ``Vault``, mixed into it; the contracts are in ``guardmail.vault.store``).

HEAD names an entry the journal holds: it is written after the commit that made that entry, so it
may lag the journal, never lead it. Before an append, HEAD must name an entry the journal still
holds unchanged; what is found wrong is appended to ``TAMPERED`` (0600) for ``evidence verify``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from guardmail.errors import StateError
from guardmail.logs import event
from guardmail.storage.base import JournalRow, Transaction
from guardmail.storage.files import private_dir
from guardmail.vault import journal
from guardmail.vault.blobs import write_durably

HEAD_FILE = "HEAD"
TAMPER_FILE = "TAMPERED"  # notes of a HEAD found missing or broken before an append


class HeadWitness:
    """The HEAD and TAMPERED files of the vault at ``root``."""

    root: Path
    tenant: str

    def head_witness(self) -> tuple[int, str] | None:
        """(seq, hash) from the HEAD file: an entry the journal must still contain unchanged
        (seq 0 and ``GENESIS`` for a vault that had no entry yet). StateError if unreadable."""
        path = self.root / HEAD_FILE
        try:
            text = path.read_bytes().decode("ascii")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            text = "(not ASCII)"
        seq, _, digest = text.strip().partition(" ")
        if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise StateError(
                f"{path}: not a HEAD witness (expected 'SEQ SHA256', found {text[:80]!r})"
            )
        return int(seq), digest

    def tamper_notes(self) -> list[str]:
        """What ``_check_witness`` found wrong with HEAD before an append, one note a line."""
        try:
            text = (self.root / TAMPER_FILE).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def _check_witness(self, tx: Transaction) -> None:
        """Before appending: HEAD must name an entry the journal holds unchanged. A brand-new
        vault (no entry, no HEAD) gets the GENESIS witness. A missing or broken HEAD is noted in
        ``TAMPERED`` (the append then rewrites HEAD, which would otherwise hide the damage)."""
        head = tx.journal_head(self.tenant)
        try:
            witness = self.head_witness()
        except StateError as exc:
            self._note_tampering(str(exc))
            return
        if witness is None:
            if head is None:
                private_dir(self.root)
                write_durably(self.root / HEAD_FILE, f"0 {journal.GENESIS}\n".encode("ascii"))
            else:
                self._note_tampering(f"HEAD missing while the journal has {head.seq} entries")
            return
        seq, digest = witness
        if seq == 0 and digest == journal.GENESIS:
            return
        named = tx.journal_row(self.tenant, seq)
        if named is None or named.hash != digest:
            last = head.seq if head else 0
            self._note_tampering(
                f"HEAD names entry {seq}, which the journal (ending at {last}) "
                + ("does not hold" if named is None else "holds with another hash")
            )

    def _note_tampering(self, note: str) -> None:
        event("vault.tampered", level=logging.ERROR, vault=str(self.root), problem=note)
        if note in self.tamper_notes():
            return  # seen before this batch's HEAD was rewritten (archive, then action)
        private_dir(self.root)
        fd = os.open(self.root / TAMPER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{note}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self, row: JournalRow) -> None:
        # Written after the commit: it may lag the journal (a crash in between), never lead it.
        private_dir(self.root)
        write_durably(self.root / HEAD_FILE, f"{row.seq} {row.hash}\n".encode("ascii"))
