"""What an IMAP folder's watcher keeps, beside its checkpoint, to recover from a crash, and what
it does with it when a session starts.

- ``reconcile_folder``: a crash (or a lost connection) between an action and its journal entry
  leaves the message moved or expunged, so no later scan meets it again and its ``archived``
  entry would stay without an ``action`` for ever. Each such entry of this folder (same account,
  folder and UIDVALIDITY) whose UID the folder no longer holds gets its ``action`` entry
  (``pipeline.reconcile``); one whose UID is still there is left to the scan, which acts on it
  again through the pipeline (the vault's dedupe scope keeps it from being archived twice).
- ``RulesMark``: the fingerprint of the offender rules every UID at or below the checkpoint was
  judged by. At start, other rules (offenders added while the daemon was down, or a reload whose
  re-judging a crash cut short) mean the folder's existing mail is judged again.
- ``StoredCopyMarks``: for act.py, the UIDs a UID COPY was sent for whose EXPUNGE has not
  returned, so that after a crash in between they are not copied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap.act import uid_set
from guardmail.channels.imap.batch import Folder
from guardmail.errors import StateError, VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.reconcile import reconcile
from guardmail.storage.base import Storage


def reconcile_folder(client: IMAPClient, pipeline: Pipeline, where: Folder) -> None:
    """Journal the actions a crash kept from the journal; log, never raise, if the vault cannot
    (connection errors propagate: the session reconnects and tries again)."""
    prefix = where.ref(0).removesuffix("0")  # "imap:ACCOUNT/FOLDER;UIDVALIDITY=V/;UID="

    def where_now(body: dict[str, Any]) -> str | None:
        ref = body.get("source_ref")
        if not isinstance(ref, str) or not ref.startswith(prefix):
            return None
        number = ref[len(prefix) :]
        if not number.isdigit():
            return None
        uid = int(number)
        # The server answers a UID set with the highest UID even when that is not in the set.
        if uid in client.search(["UID", str(uid)]):
            return None
        return f"UID {uid} no longer in {where.folder} (moved or expunged)"

    try:
        reconcile(pipeline.vault, where_now, now=pipeline.clock())
    except (VaultUnavailable, StateError, OSError) as exc:
        event(
            "imap.reconcile_failed",
            level=logging.ERROR,
            account=where.account,
            folder=where.folder,
            error=str(exc),
        )


class StoredCopyMarks:
    """act.py's ``CopyMarks`` in the state storage, one set of UIDs per watched folder: those a
    COPY was sent for and whose EXPUNGE has not returned. Not only the last COPY's: after a crash,
    another chunk (a re-judging pass, a lower UID) may be copied before the one the crash cut."""

    def __init__(self, storage: Storage, *, tenant: str, source: str, folder: str) -> None:
        self.storage = storage
        self.tenant = tenant
        self.source = source
        self.key = f"copying:{folder}"

    def marked(self) -> set[int]:
        with self.storage.read() as tx:
            return _uids(tx.cursor(self.tenant, self.source, self.key))

    def mark(self, uids: Sequence[int]) -> None:
        with self.storage.transaction() as tx:
            kept = _uids(tx.cursor(self.tenant, self.source, self.key))
            tx.set_cursor(self.tenant, self.source, self.key, uid_set(sorted(kept | set(uids))))

    def unmark(self, uids: Sequence[int]) -> None:
        with self.storage.transaction() as tx:
            kept = _uids(tx.cursor(self.tenant, self.source, self.key))
            if kept & set(uids):
                tx.set_cursor(self.tenant, self.source, self.key, uid_set(sorted(kept - set(uids))))


def _uids(value: str | None) -> set[int]:
    """The UIDs of a compact set as ``uid_set`` writes it ("3:5,9")."""
    uids: set[int] = set()
    for part in (value or "").split(","):
        first, _, last = part.partition(":")
        if first.isdigit() and (not last or last.isdigit()):
            uids.update(range(int(first), int(last or first) + 1))
    return uids


class RulesMark:
    """The rules fingerprint kept for one watched folder (see the module docstring)."""

    def __init__(self, storage: Storage, *, tenant: str, source: str, folder: str) -> None:
        self.storage = storage
        self.tenant = tenant
        self.source = source
        self.key = f"rules:{folder}"

    def changed(self, rules: str, *, fresh: bool) -> bool:
        """Whether ``rules`` differ from those kept. None kept: an older checkpoint, judged by
        unknown rules (changed), unless ``fresh``: no checkpoint before, nothing judged yet,
        and ``rules`` are kept as those of everything to come."""
        with self.storage.transaction() as tx:
            kept = tx.cursor(self.tenant, self.source, self.key)
            if kept is None and fresh:
                tx.set_cursor(self.tenant, self.source, self.key, rules)
                return False
        return kept != rules

    def keep(self, rules: str) -> None:
        """Every UID at or below the checkpoint is now judged by ``rules``."""
        with self.storage.transaction() as tx:
            tx.set_cursor(self.tenant, self.source, self.key, rules)
