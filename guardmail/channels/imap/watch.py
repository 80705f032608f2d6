"""IMAP source: watches folders with IDLE (polling where the server lacks it) and carries out
verdicts a chunk of messages at a time: one UID MOVE of the set (or one UID COPY + STORE
\\Deleted + UID EXPUNGE of that set), not one command per message.

Contracts:
- Protocol I/O only; deciding and archiving happen in the pipeline (``Pipeline.run_many``), which
  has a chunk acted on only after the vault holds the exact ``BODY.PEEK[]`` bytes of every
  message in it. If the vault fails, nothing of the chunk is moved and the checkpoint stays
  below it; the retry archives nothing twice (the vault's per-folder dedupe scope).
- Clean mail is never changed: it is judged on ``BODY.PEEK[HEADER]`` (PEEK: no \\Seen), and only
  items to block are fetched whole, in memory-bounded chunks gathered across header batches
  (batch.py).
- Never a bare EXPUNGE (act.py): it would remove every message anyone marked \\Deleted.
- The checkpoint (UIDVALIDITY, last handled UID; checkpoint.py) is saved after the actions it
  covers, and only past UIDs that were handled: judged clean, archived and acted on, or
  expunged by someone else meanwhile; an offender judged but not yet acted on holds it below
  itself. After any outage everything newer is judged; a new UIDVALIDITY means a full rescan,
  and the vault's per-folder dedupe scope keeps a message already archived from being archived
  again.
- Each session starts with recovery.py: actions a crash kept from the journal are reconciled,
  and if the offender rules differ from those the mail at or below the checkpoint was judged by
  (offenders added while the daemon was down, a reload's re-judging cut short), that mail is
  judged again, as a hot reload has it judged.
- One message cannot stop the folder (judge.py): a bug building its Item leaves it where it is.
- After a drop, a reconnect with backoff and jitter; the backoff starts afresh only after a
  session that lasted ``STABLE_SECONDS``, so a server that dies at the same message after every
  login is not hammered once a second.
- The person's Sent folder(s) are watched the same way in the ``outgoing`` mode (sent.py): judged
  by their recipients, the ones to an offender archived as the person's side, never moved.
- One thread and connection per folder (imapclient is synchronous; source.py starts them). The
  thread runs the pipeline's steps itself (vault, action, warning hook), so the connection is
  only ever used by its own thread and the way from IDLE to MOVE has no hop through the event
  loop. A catch-up of more than one header batch (a first scan, a re-judging, a long outage)
  also has a second, read-only connection for as long as it lasts, read by its own thread one
  chunk ahead (scan.py); checkpoints still move only as this thread handles what came before
  them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

from imapclient import IMAPClient

from guardmail.channels.imap.act import FolderActions
from guardmail.channels.imap.batch import WHOLE_BYTES, WHOLE_MESSAGES, Folder
from guardmail.channels.imap.checkpoint import FolderCheckpoint
from guardmail.channels.imap.conn import CONNECTION_ERRORS, close_quietly, connect
from guardmail.channels.imap.judge import FolderJudge
from guardmail.channels.imap.recovery import RulesMark, StoredCopyMarks, reconcile_folder
from guardmail.channels.imap.roles import resolve
from guardmail.channels.imap.scan import Point, Reader, Step, read_steps
from guardmail.channels.imap.wake import Nudge, announced, idle
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.core.backoff import NETWORK, REFUSED, STABLE_SECONDS
from guardmail.errors import ConnectFailure, VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.base import Storage

FETCH_BATCH = 500
VAULT_RETRY_SECONDS = 5.0
# Empty searches in a row that each came with an EXISTS before the watcher goes to IDLE anyway
# (a server that announced mail its search never finds would otherwise keep it searching).
RESEARCH_LIMIT = 3


class FolderWatcher:
    """One folder of one account, run by ``run()`` in its own thread until ``stop()``."""

    def __init__(
        self,
        *,
        cfg: ImapSourceConfig,
        folder: str,
        tenant: str,
        pipeline: Pipeline,
        storage: Storage,
        review_folder: str = "Review",
        outgoing: bool = False,
    ) -> None:
        self.cfg = cfg
        self.folder = folder
        self.outgoing = outgoing  # a Sent folder: archive only (sent.py)
        self.tenant = tenant
        self.pipeline = pipeline
        self.storage = storage
        self.source = f"imap:{cfg.name}"
        self.actions = FolderActions(
            folder=folder,
            quarantine=cfg.quarantine_folder,
            review=review_folder,
            marks=StoredCopyMarks(storage, tenant=tenant, source=self.source, folder=folder),
        )
        self.judge = FolderJudge(
            pipeline=pipeline,
            actions=self.actions,
            account=cfg.name,
            folder=folder,
            outgoing=outgoing,
        )
        self._stopping = threading.Event()
        self._client: IMAPClient | None = None
        self._rejudge = Nudge()  # raised by rejudge() from the event loop's thread
        self._fresh = False  # this folder had no checkpoint at all: nothing judged before
        self.rules_mark = RulesMark(storage, tenant=tenant, source=self.source, folder=folder)
        self.checkpoint = FolderCheckpoint(
            storage=storage,
            tenant=tenant,
            source=self.source,
            account=cfg.name,
            folder=folder,
            scan_existing=cfg.scan_existing,
        )

    # --- thread side -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._rejudge.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            began: float | None = None
            try:
                self._client = connect(self.cfg)
                event("imap.connected", account=self.cfg.name, folder=self.folder)
                began = time.monotonic()
                self._session(self._client)
            except ConnectFailure as exc:
                wait = (REFUSED if exc.refused else NETWORK).delay(failures, rand=random.random())
                failures += 1
                event(
                    exc.event,
                    level=logging.ERROR,
                    account=self.cfg.name,
                    folder=self.folder,
                    error=exc.reason,
                    retry_in=round(wait, 1),
                )
                self._stopping.wait(wait)
            except CONNECTION_ERRORS as exc:
                if self._stopping.is_set():
                    break
                if began is not None and time.monotonic() - began >= STABLE_SECONDS:
                    failures = 0  # else keep backing off: it dies soon after every login
                wait = NETWORK.delay(failures, rand=random.random())
                failures += 1
                event(
                    "imap.disconnected",
                    level=logging.WARNING,
                    account=self.cfg.name,
                    folder=self.folder,
                    error=str(exc) or type(exc).__name__,
                    retry_in=round(wait, 1),
                )
                self._stopping.wait(wait)
            finally:
                client, self._client = self._client, None
                self.actions.reset()
                close_quietly(client)

    def rejudge(self) -> None:
        """Judge the folder's existing mail again by the current rules, at once (any thread):
        wakes the watcher from IDLE; kept pending across reconnects until a pass completes."""
        self._rejudge.set()

    def stop(self) -> None:
        """Ask the thread to finish; interrupts a blocking IDLE by closing the socket."""
        self._stopping.set()
        client = self._client
        if client is not None:
            try:
                client.socket().shutdown(2)  # socket.SHUT_RDWR
            except (OSError, AttributeError):
                pass

    def _session(self, client: IMAPClient) -> None:
        # A SPECIAL-USE role (\\Junk) is looked up again at every connection: it may move.
        self.actions.quarantine = resolve(client, self.cfg.quarantine_folder, account=self.cfg.name)
        selected = client.select_folder(self.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        uidnext = int(selected.get(b"UIDNEXT", 0))
        last, fresh = self.checkpoint.start(uidvalidity, uidnext)
        self._fresh = self._fresh or fresh
        if self.rules_mark.changed(self.pipeline.rules.fingerprint(), fresh=self._fresh):
            self._rejudge.set()  # the offenders changed since this folder's mail was judged
        reconcile_folder(
            client,
            self.pipeline,
            Folder(
                tenant=self.tenant,
                account=self.cfg.name,
                folder=self.folder,
                uidvalidity=uidvalidity,
            ),
        )
        can_idle = client.has_capability("IDLE")
        while not self._stopping.is_set():
            try:
                if self._rejudge.take():
                    self._rejudge_existing(client, uidvalidity, last)
                last = self._catch_up(client, uidvalidity, last)
            except VaultUnavailable as exc:
                event(
                    "imap.vault_unavailable",
                    level=logging.WARNING,
                    account=self.cfg.name,
                    folder=self.folder,
                    retry_in=VAULT_RETRY_SECONDS,
                    error=str(exc),
                )
                self._stopping.wait(VAULT_RETRY_SECONDS)
                continue
            if can_idle:
                self._idle(client)
            else:
                self._rejudge.wait(client.socket(), self.cfg.poll_seconds)
                client.noop()

    def _catch_up(self, client: IMAPClient, uidvalidity: int, last: int) -> int:
        """Judge every UID above ``last``; return the new checkpoint (saved).

        Searches again until a search finds nothing new, so that the last command before IDLE
        is that search: anything that arrives after it is announced during IDLE, whereas an
        EXISTS the server sent with an earlier command's reply (MOVE, FETCH) is not repeated.
        """
        judged = 0
        unfound = 0
        while True:
            announced(client)  # what earlier replies announced, this search covers
            # The server answers "n:*" with the highest UID even when it is not above n.
            uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
            if uids:
                last = self._handle(client, uidvalidity, last, uids)
                judged += len(uids)
                unfound = 0
                continue
            # Mail announced with the search's own reply may be newer than what it searched
            # (Dovecot syncs its view when a command ends): search again (wake.py).
            if announced(client) and unfound < RESEARCH_LIMIT:
                unfound += 1
                continue
            break
        if judged:
            event(
                "imap.caught_up",
                account=self.cfg.name,
                folder=self.folder,
                judged=judged,
                last_uid=last,
            )
        return last

    def _rejudge_existing(self, client: IMAPClient, uidvalidity: int, last: int) -> None:
        """Judge every message at or below the checkpoint again (rules changed): offenders are
        archived and acted on as new mail is; the checkpoint does not move. If it fails, it is
        asked for again, so the next pass (after the vault retry, or on the next connection)
        does it."""
        rules = self.pipeline.rules.fingerprint()  # what this pass judges by
        try:
            uids = (
                sorted(u for u in client.search(["UID", f"1:{last}"]) if u <= last) if last else []
            )
            if uids:
                self._handle(client, uidvalidity, last, uids)
        except BaseException:
            self._rejudge.set()
            raise
        self.rules_mark.keep(rules)  # a reload during the pass nudged for another
        event("imap.rejudged", account=self.cfg.name, folder=self.folder, judged=len(uids))

    def _handle(self, client: IMAPClient, uidvalidity: int, last: int, uids: list[int]) -> int:
        """Judge ``uids`` (ascending, all above the checkpoint ``last``) on headers a batch at a
        time; archive and act on the offenders a chunk at a time; return the last UID, every one
        of them handled.

        After each header batch the checkpoint moves up to just below the first offender still
        to be archived and acted on: a restart judges again what was not handled, never skips
        it. It is written only when it moves (not on the way from IDLE to the MOVE). More than
        one batch is read on a second connection one step ahead (scan.py) while this one
        archives and moves; if that connection cannot be had, this one reads too.
        """
        where = Folder(
            tenant=self.tenant, account=self.cfg.name, folder=self.folder, uidvalidity=uidvalidity
        )

        def read(reading: IMAPClient) -> Iterator[Step]:
            return read_steps(
                reading,
                uids,
                lambda headers: self.judge.offenders(where, headers),
                batch=FETCH_BATCH,
                max_messages=WHOLE_MESSAGES,
                max_bytes=WHOLE_BYTES,
                ahead=reading is not client,  # the Reader's own connection
            )

        reader = self._reader(uidvalidity, read) if len(uids) > FETCH_BATCH else None
        try:
            for step in reader.steps() if reader is not None else read(client):
                if isinstance(step, Point):
                    if step.uid > last:
                        self.checkpoint.save(uidvalidity, step.uid)
                        last = step.uid
                else:
                    self.judge.archive_and_act(client, where, step.uids, step.whole)
        finally:
            if reader is not None:
                reader.close()
        return uids[-1]

    def _reader(
        self, uidvalidity: int, read: Callable[[IMAPClient], Iterator[Step]]
    ) -> Reader | None:
        """A Reader on a connection of its own, or None (read on the watcher's) if the server
        will not have one more (a per-user connection limit)."""
        try:
            second = connect(self.cfg)
        except ConnectFailure as exc:
            event(
                "imap.reader_unavailable",
                level=logging.WARNING,
                account=self.cfg.name,
                folder=self.folder,
                error=exc.reason,
            )
            return None
        return Reader.start(
            second,
            folder=self.folder,
            uidvalidity=uidvalidity,
            read=read,
            stopping=self._stopping,
            name=f"imap-read-{self.cfg.name}",
        )

    def _idle(self, client: IMAPClient) -> None:
        idle(client, seconds=self.cfg.idle_seconds, stopping=self._stopping, nudge=self._rejudge)
