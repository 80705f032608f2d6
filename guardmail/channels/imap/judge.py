"""What an IMAP folder's watcher does with the mail it reads (watch.py reads it): which messages
of a header batch are fetched whole, and a chunk of whole messages archived and acted on.

Contracts:
- One message cannot stop the folder: building its Item (from the header or the whole message)
  is contained per message. On an unexpected error (a bug: reading mail is total) the message
  is logged (``imap.item_failed``) and left where it is, unchanged, and the others go on.
- A chunk is acted on only through ``Pipeline.run_many``, which archives it first. A Sent folder
  (``outgoing``) is judged by its recipients and archived only, never moved (sent.py).
- A first scan meets each sender many times: the header judgment goes through a memo (memo.py)
  keyed by what it reads of the header, never for a source whose judgment reads more (the alias
  linker reads all of the header and learns as it goes); the memo gives what judging each
  message afresh gives (tests/unit/test_imap_memo.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap import sent
from guardmail.channels.imap.act import FolderActions
from guardmail.channels.imap.batch import Folder
from guardmail.channels.imap.memo import HeaderMemo
from guardmail.core.item import Item
from guardmail.core.rules import Action, Verdict
from guardmail.pipeline import Pipeline


class FolderJudge:
    """The judging and acting of one watched folder, on its watcher's thread and connection."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        actions: FolderActions,
        account: str,
        folder: str,
        outgoing: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.actions = actions
        self.account = account
        self.folder = folder
        self.outgoing = outgoing  # a Sent folder: archive only (sent.py)
        self.memo = HeaderMemo(pipeline, outgoing=outgoing)

    def offenders(
        self, where: Folder, headers: dict[int, tuple[bytes, int]]
    ) -> list[tuple[int, int]]:
        """(UID, RFC822.SIZE) of each message of a header batch that its header says to
        block."""
        now = datetime.now(UTC)
        found: list[tuple[int, int]] = []
        memo = self.memo.now()
        if memo is not None and not memo.worth():
            memo = None
        for uid, (header, size) in sorted(headers.items()):
            try:
                key = memo.key(header) if memo is not None else None
                whole = memo.get(key) if memo is not None and key is not None else None
                if whole is None:
                    whole = self.whole(where, uid, header, now)
                    if memo is not None and key is not None:
                        memo.put(key, whole)
            except Exception:
                self._item_failed(uid)
                continue
            if whole:
                found.append((uid, size))
        return found

    def whole(self, where: Folder, uid: int, header: bytes, now: datetime) -> bool:
        """Whether the message ``header`` heads is fetched whole: to block it, or to judge it
        whole (``Pipeline.needs_whole``). Without the linker a function of what
        ``HeaderMemo.key`` keeps of ``header`` and of the configuration alone."""
        if self.outgoing:
            return sent.to_offender(self.pipeline, sent.probe(where, uid, header, now))
        probe = where.probe(uid, header, now)
        verdict = self.pipeline.judge(probe, reviews=True)
        return verdict.action is not Action.PASS or self.pipeline.needs_whole(probe)

    def archive_and_act(
        self, client: IMAPClient, where: Folder, chunk: list[int], whole: dict[int, Any]
    ) -> None:
        """Have the pipeline archive ``chunk`` (fetched ``whole``), then act on it at once."""
        now = datetime.now(UTC)
        if self.outgoing:
            sent.keep(self.pipeline, where, whole, now)
            return
        items: list[Item] = []
        for uid in chunk:
            if uid not in whole:
                continue
            try:
                items.append(where.item(uid, whole[uid], now))
            except Exception:
                self._item_failed(uid)
        if items:
            self.pipeline.run_many(items, lambda i, v: self._act_many(client, i, v), reviews=True)

    def _item_failed(self, uid: int) -> None:
        # A bug must not stop the folder: the message stays where it is, unchanged; the
        # traceback is logged (never the content).
        logging.getLogger("guardmail").exception(
            "imap.item_failed",
            extra={"gm_fields": {"account": self.account, "folder": self.folder, "uid": uid}},
        )

    def _act_many(
        self, client: IMAPClient, items: Sequence[Item], verdicts: Sequence[Verdict]
    ) -> list[str]:
        uids = [int(dict(item.meta)["uid"]) for item in items]
        actions = [v.action for v in verdicts]
        return self.actions.carry_out(client, uids, actions, [item.raw for item in items])
