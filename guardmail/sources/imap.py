"""IMAP source: watches folders with IDLE (polling where the server lacks it) and carries out
verdicts with MOVE, or COPY + \\Deleted + UID EXPUNGE of that one UID.

Contracts:
- Protocol I/O only; deciding and archiving happen in the pipeline, which calls ``act`` only after
  the vault holds the exact ``BODY.PEEK[]`` bytes.
- Clean mail is never changed: it is judged on ``BODY.PEEK[HEADER]`` (PEEK: no \\Seen), and only
  items to block are fetched whole.
- Never a bare EXPUNGE: it would remove every message anyone marked \\Deleted. Without UIDPLUS the
  copy stays marked \\Deleted for the user's client to expunge.
- The checkpoint (UIDVALIDITY, last handled UID) advances only past UIDs that were handled:
  judged clean, or archived and acted on. After any outage everything newer is judged; a new
  UIDVALIDITY means a full rescan, and the vault's per-folder dedupe scope keeps a message
  already archived from being archived again.
- One thread and connection per folder (imapclient is synchronous); the pipeline runs in the
  event loop, and the thread waits for it, so a connection is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import imaplib
import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import _parse_untagged_response

from guardmail.core.backoff import NETWORK, REFUSED
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.sourceconfig import ImapSourceConfig
from guardmail.sources.imapconn import CONNECTION_ERRORS, ConnectFailure, close_quietly, connect
from guardmail.storage.base import Checkpoint, Storage

FETCH_BATCH = 200
# How long an IDLE wait blocks before looking at the stop flag (stop also closes the socket).
IDLE_SLICE = 5.0
VAULT_RETRY_SECONDS = 5.0


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
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.cfg = cfg
        self.folder = folder
        self.tenant = tenant
        self.pipeline = pipeline
        self.storage = storage
        self.loop = loop
        self.source = f"imap:{cfg.name}"
        self._stopping = threading.Event()
        self._client: IMAPClient | None = None
        self._quarantine_ready = False

    # --- thread side -------------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._client = connect(self.cfg)
                event("imap.connected", account=self.cfg.name, folder=self.folder)
                failures = 0
                self._session(self._client)
            except ConnectFailure as exc:
                wait = (REFUSED if exc.refused else NETWORK).delay(failures, rand=random.random())
                failures += 1
                event(
                    exc.event,
                    level=logging.ERROR,
                    account=self.cfg.name,
                    error=exc.reason,
                    retry_in=round(wait, 1),
                )
                self._stopping.wait(wait)
            except CONNECTION_ERRORS as exc:
                if self._stopping.is_set():
                    break
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
                self._quarantine_ready = False
                close_quietly(client)

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
        selected = client.select_folder(self.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        uidnext = int(selected.get(b"UIDNEXT", 0))
        last = self._start_point(uidvalidity, uidnext)
        can_idle = client.has_capability("IDLE")
        while not self._stopping.is_set():
            try:
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
                self._stopping.wait(self.cfg.poll_seconds)
                client.noop()

    def _start_point(self, uidvalidity: int, uidnext: int) -> int:
        with self.storage.transaction() as tx:
            point = tx.checkpoint(self.tenant, self.source, self.folder)
            if point is not None and point.uidvalidity == uidvalidity:
                return point.last_uid
            if point is not None:
                event(
                    "imap.uidvalidity_changed",
                    level=logging.WARNING,
                    account=self.cfg.name,
                    folder=self.folder,
                    old=point.uidvalidity,
                    new=uidvalidity,
                )
                start = 0  # every UID is new: rescan; the vault's dedupe scope prevents doubles
            else:
                start = 0 if self.cfg.scan_existing else max(uidnext - 1, 0)
            tx.set_checkpoint(
                self.tenant,
                self.source,
                self.folder,
                Checkpoint(uidvalidity=uidvalidity, last_uid=start),
            )
        return start

    def _save(self, uidvalidity: int, last: int) -> None:
        with self.storage.transaction() as tx:
            tx.set_checkpoint(
                self.tenant,
                self.source,
                self.folder,
                Checkpoint(uidvalidity=uidvalidity, last_uid=last),
            )

    def _catch_up(self, client: IMAPClient, uidvalidity: int, last: int) -> int:
        """Judge every UID above ``last``; return the new checkpoint (saved).

        Searches again until a search finds nothing new, so that the last command before IDLE
        is that search: anything that arrives after it is announced during IDLE, whereas an
        EXISTS the server sent with an earlier command's reply (MOVE, FETCH) is not repeated.
        """
        judged = 0
        while True:
            # The server answers "n:*" with the highest UID even when it is not above n.
            uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
            if not uids:
                break
            for start in range(0, len(uids), FETCH_BATCH):
                last = self._judge_batch(client, uidvalidity, uids[start : start + FETCH_BATCH])
                self._save(uidvalidity, last)
            judged += len(uids)
        if judged:
            event(
                "imap.caught_up",
                account=self.cfg.name,
                folder=self.folder,
                judged=judged,
                last_uid=last,
            )
        return last

    def _judge_batch(self, client: IMAPClient, uidvalidity: int, batch: list[int]) -> int:
        """Judge (and act on) ``batch``; return its highest UID, every one of them handled."""
        headers = client.fetch(batch, ["BODY.PEEK[HEADER]"])
        missing = [u for u in batch if u not in headers]
        if missing:
            # Expunged meanwhile (by the user or another client), or the server lost the
            # thread: advance past a UID only once a search no longer finds it.
            still = set(client.search(["UID", ",".join(map(str, missing))]))
            if still & set(missing):
                raise ConnectionError(f"FETCH did not return UIDs {sorted(still)}")
        for uid in batch:
            if uid in headers:
                self._handle(client, uidvalidity, uid, headers[uid].get(b"BODY[HEADER]", b""))
        return batch[-1]

    def _handle(self, client: IMAPClient, uidvalidity: int, uid: int, header: bytes) -> None:
        ref = f"imap:{self.cfg.name}/{self.folder};UIDVALIDITY={uidvalidity}/;UID={uid}"
        now = datetime.now(UTC)
        probe = mail_item(
            header, tenant=self.tenant, account=self.cfg.name, source_ref=ref, received_at=now
        )
        if self.pipeline.judge(probe).action is Action.PASS:
            return
        whole = client.fetch([uid], ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"]).get(uid)
        if whole is None:
            return  # expunged between the two fetches: nothing left to act on
        meta = (
            ("folder", self.folder),
            ("uid", str(uid)),
            ("uidvalidity", str(uidvalidity)),
            ("internaldate", _iso(whole.get(b"INTERNALDATE"))),
            ("flags", " ".join(_text(f) for f in whole.get(b"FLAGS", ()))),
        )
        item = mail_item(
            whole[b"BODY[]"],
            tenant=self.tenant,
            account=self.cfg.name,
            source_ref=ref,
            received_at=now,
            meta=meta,
            dedupe_scope=f"imap:{self.cfg.name}/{self.folder}",
        )
        future = asyncio.run_coroutine_threadsafe(self.pipeline.process(item, self), self.loop)
        while True:
            try:
                future.result(timeout=IDLE_SLICE)
                return
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set():
                    # Shutting down: the loop may no longer run it. The checkpoint stays before
                    # this UID, so the next start handles it again (the vault dedupes).
                    future.cancel()
                    raise ConnectionError("stopping before the action finished") from None

    def _idle(self, client: IMAPClient) -> None:
        client.idle()
        deadline = time.monotonic() + self.cfg.idle_seconds
        # Dovecot often sends "* N EXISTS" in the same packet as "+ idling"; imapclient's idle()
        # leaves that line in imaplib's read buffer, where idle_check (which waits on the raw
        # socket) never looks. Read what is already buffered first.
        pending = _buffered_responses(client)
        try:
            while not self._stopping.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                responses = pending or client.idle_check(timeout=IDLE_SLICE)
                if pending:
                    pending, began = [], 0.0
                if any(_is_bye(r) for r in responses):
                    raise ConnectionError("server said BYE during IDLE")
                if any(_is_news(r) for r in responses):
                    break
                if not responses and time.monotonic() - began < IDLE_SLICE / 2:
                    # imapclient swallows EOF in idle_check and returns nothing at once: the
                    # server is gone (a real quiet spell lasts the whole slice).
                    raise ConnectionError("connection closed during IDLE")
        finally:
            if not self._stopping.is_set():
                client.idle_done()

    # --- event-loop side: the pipeline's Actor -----------------------------------------------

    async def act(self, item: Item, verdict: Verdict) -> str:
        return await asyncio.to_thread(self._act, item, verdict)

    def _act(self, item: Item, verdict: Verdict) -> str:
        client = self._client
        if client is None:
            raise ConnectionError("connection closed before the action")
        uid = int(dict(item.meta)["uid"])
        if verdict.action is Action.BLOCK:
            return f"deleted UID {uid}: " + self._remove(client, uid)
        target = self.cfg.quarantine_folder
        if self.folder == target:
            return f"UID {uid} left in {target}, where the server's Sieve filed it"
        if not self._quarantine_ready:
            if not client.folder_exists(target):
                try:
                    client.create_folder(target)
                except IMAPClientError as exc:
                    # Another client (or our own other folder's watcher) created it meanwhile.
                    if "EXISTS" not in str(exc).upper():  # [ALREADYEXISTS] (RFC 5530)
                        raise
                client.subscribe_folder(target)
            self._quarantine_ready = True
        if client.has_capability("MOVE"):
            client.move([uid], target)
            return f"moved UID {uid} to {target}"
        client.copy([uid], target)
        return f"copied UID {uid} to {target}; " + self._remove(client, uid)

    def _remove(self, client: IMAPClient, uid: int) -> str:
        client.add_flags([uid], [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])  # this UID alone, never a bare EXPUNGE
            return "expunged by UID"
        return "marked \\Deleted (no UIDPLUS: left for the mail client to expunge)"


def _is_news(response: Any) -> bool:
    return (
        isinstance(response, tuple)
        and len(response) >= 2
        and response[1]
        in (
            b"EXISTS",
            b"RECENT",
        )
    )


def _buffered_responses(client: IMAPClient) -> list[Any]:
    """Untagged responses already sitting in imaplib's buffer, read without blocking."""
    sock = client.socket()
    responses: list[Any] = []
    sock.setblocking(False)
    try:
        while True:
            try:
                line = client._imap._get_line()
            except (OSError, imaplib.IMAP4.abort):
                break  # nothing (more) buffered, or an incomplete line: idle_check takes over
            responses.append(_parse_untagged_response(line))
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
    return responses


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else _text(value or "")


class ImapSource:
    """Every folder of one IMAP account, each watched by a FolderWatcher in its own thread."""

    def __init__(
        self, *, cfg: ImapSourceConfig, tenant: str, pipeline: Pipeline, storage: Storage
    ) -> None:
        self.cfg = cfg
        self.tenant = tenant
        self.pipeline = pipeline
        self.storage = storage

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        watchers = [
            FolderWatcher(
                cfg=self.cfg,
                folder=folder,
                tenant=self.tenant,
                pipeline=self.pipeline,
                storage=self.storage,
                loop=loop,
            )
            for folder in self.cfg.folders
        ]
        # Dedicated threads: the default executor is small and serves the pipeline's own work.
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(watchers), thread_name_prefix=f"imap-{self.cfg.name}"
        )
        futures = [loop.run_in_executor(pool, w.run) for w in watchers]
        try:
            await asyncio.gather(*futures)
        finally:
            for w in watchers:
                w.stop()
            # Never block the loop on the threads: they may be waiting for it.
            await asyncio.wait(futures, timeout=IDLE_SLICE * 2)
            pool.shutdown(wait=False)
