"""The person's side of the conversation in mail: their Sent folder(s), archive only.

A Sent folder is watched like any other (watch.py's ``FolderWatcher``, its own thread and
connection, so it never slows INBOX) in the ``outgoing`` mode this module supplies:
- a message is judged by whom it was written to (To, Cc, Bcc: ``core.item.mail_recipients``)
  with the same offender rules, never by its sender (the person) and never for impersonation
  or suspected aliases;
- one addressed to an offender is fetched whole (``BODY.PEEK[]``: no \\Seen) and archived with
  ``direction: outgoing`` and an ``action: kept`` entry (kept.py). It is never moved, flagged or
  expunged, and no warning follows.
- ``sent_folders: auto`` finds the folder at each connection: the server's ``\\Sent`` folder
  (RFC 6154 SPECIAL-USE), else a usual name ("Sent", "Sent Items", ...; imapclient's list).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.imapclient import SENT

from guardmail.channels.imap.batch import Folder
from guardmail.channels.imap.conn import CONNECTION_ERRORS, close_quietly, connect
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.core.backoff import NETWORK
from guardmail.core.item import Channel, Item, mail_recipients
from guardmail.core.rules import Action
from guardmail.errors import ConnectFailure
from guardmail.kept import OUTGOING, keep_many
from guardmail.logs import event
from guardmail.pipeline import Pipeline

DONE = "the person's own message: archived only, left in the Sent folder"


def probe(where: Folder, uid: int, header: bytes, now: datetime) -> Item:
    """An Item of a sent message's header whose identities are its recipients."""
    return Item(
        raw=header,
        channel=Channel.MAIL,
        tenant=where.tenant,
        account=where.account,
        source_ref=where.ref(uid),
        received_at=now,
        identities=mail_recipients(header),
    )


def to_offender(pipeline: Pipeline, item: Item) -> bool:
    """Whether a sent message (``probe``) was written to an offender."""
    return pipeline.judge_recipients(item).action is not Action.PASS


def keep(
    pipeline: Pipeline, where: Folder, whole: dict[int, dict[bytes, Any]], now: datetime
) -> int:
    """Archive the whole sent messages fetched (``batch.fetch_whole``) that were written to an
    offender, as the person's side; how many. Blocking; VaultUnavailable propagates."""
    items = []
    for uid in sorted(whole):
        fetched = where.item(uid, whole[uid], now)
        items.append(replace(fetched, identities=mail_recipients(fetched.raw)))
    verdicts = [pipeline.judge_recipients(i) for i in items]
    chosen = [(i, v) for i, v in zip(items, verdicts, strict=True) if v.action is not Action.PASS]
    keep_many(
        pipeline,
        [i for i, _ in chosen],
        [v for _, v in chosen],
        direction=OUTGOING,
        done=DONE,
    )
    return len(chosen)


def sent_names(client: IMAPClient, cfg: ImapSourceConfig) -> list[str]:
    """The Sent folders to watch: as configured, or the one the server names (auto)."""
    if cfg.sent_folders != "auto":
        return list(cfg.sent_folders)
    found = client.find_special_folder(SENT)
    return [found] if isinstance(found, str) and found else []


class Runner(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...
    def rejudge(self) -> None: ...


class AutoSent:
    """``sent_folders: auto``: finds the Sent folder (retrying while the server cannot be
    reached), then runs the watcher ``make`` builds for it, in the calling thread."""

    def __init__(self, *, cfg: ImapSourceConfig, make: Callable[[str], Runner]) -> None:
        self.cfg = cfg
        self.make = make
        self._stopping = threading.Event()
        self._watcher: Runner | None = None
        self._rejudge = False

    def run(self) -> None:
        folder = self._find()
        if folder is None or self._stopping.is_set():
            return
        self._watcher = watcher = self.make(folder)
        if self._rejudge:
            watcher.rejudge()
        if not self._stopping.is_set():
            watcher.run()

    def _find(self) -> str | None:
        failures = 0
        while not self._stopping.is_set():
            client = None
            try:
                client = connect(self.cfg)
                names = [n for n in sent_names(client, self.cfg) if n not in self.cfg.folders]
                if not names:
                    event("imap.sent_not_found", level=logging.WARNING, account=self.cfg.name)
                    return None
                event("imap.sent_found", account=self.cfg.name, folder=names[0])
                return names[0]
            except ConnectFailure as exc:
                failures = self._wait(failures, exc.reason)
            except CONNECTION_ERRORS as exc:
                failures = self._wait(failures, str(exc) or type(exc).__name__)
            finally:
                close_quietly(client)
        return None

    def _wait(self, failures: int, error: str) -> int:
        wait = NETWORK.delay(failures, rand=random.random())
        event(
            "imap.sent_lookup_failed",
            level=logging.WARNING,
            account=self.cfg.name,
            error=error,
            retry_in=round(wait, 1),
        )
        self._stopping.wait(wait)
        return failures + 1

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.stop()

    def rejudge(self) -> None:
        if self._watcher is not None:
            self._watcher.rejudge()
        else:
            self._rejudge = True


def outgoing_folders(cfg: ImapSourceConfig) -> Sequence[str]:
    """The Sent folders named in the config (none for ``auto``: found at run time)."""
    if cfg.sent_folders == "auto":
        return []
    return [f for f in cfg.sent_folders if f not in cfg.folders]
