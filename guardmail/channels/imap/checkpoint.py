"""An IMAP folder's checkpoint: the UIDVALIDITY and last handled UID a watcher starts above.

Contracts:
- One checkpoint per (tenant, source, folder), in Storage, read and written each in one
  transaction; the watcher (watch.py) saves it only after the actions it covers, and only past
  UIDs that were handled.
- ``start`` never skips mail already there that should be judged: a new UIDVALIDITY means every
  UID is new, so it restarts at 0 (a full rescan; the vault's per-folder dedupe scope keeps a
  message already archived from being archived again). A folder with no checkpoint starts at 0
  with ``scan_existing``, else just below UIDNEXT (only new mail), and is reported fresh:
  nothing in it was judged before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from guardmail.logs import event
from guardmail.storage.base import Checkpoint, Storage


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderCheckpoint:
    """The checkpoint of ``folder`` of the IMAP account ``account`` (source ``source``)."""

    storage: Storage
    tenant: str
    source: str
    account: str
    folder: str
    scan_existing: bool

    def start(self, uidvalidity: int, uidnext: int) -> tuple[int, bool]:
        """The last handled UID to judge above, and whether the folder had no checkpoint at all
        (fresh); the start point is saved."""
        fresh = False
        with self.storage.transaction() as tx:
            point = tx.checkpoint(self.tenant, self.source, self.folder)
            if point is not None and point.uidvalidity == uidvalidity:
                return point.last_uid, fresh
            if point is not None:
                event(
                    "imap.uidvalidity_changed",
                    level=logging.WARNING,
                    account=self.account,
                    folder=self.folder,
                    old=point.uidvalidity,
                    new=uidvalidity,
                )
                start = 0  # every UID is new: rescan; the vault's dedupe scope prevents doubles
            else:
                start = 0 if self.scan_existing else max(uidnext - 1, 0)
                fresh = True
            tx.set_checkpoint(
                self.tenant,
                self.source,
                self.folder,
                Checkpoint(uidvalidity=uidvalidity, last_uid=start),
            )
        return start, fresh

    def save(self, uidvalidity: int, last: int) -> None:
        """Record every UID up to ``last`` as handled."""
        with self.storage.transaction() as tx:
            tx.set_checkpoint(
                self.tenant,
                self.source,
                self.folder,
                Checkpoint(uidvalidity=uidvalidity, last_uid=last),
            )
