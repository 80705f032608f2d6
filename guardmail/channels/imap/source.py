"""An IMAP account as a source: every folder it watches (the configured ones, its Sent
folder(s)), each by a ``FolderWatcher`` (watch.py) in a thread of its own, under one coroutine
the daemon supervises.

Contracts:
- The threads are dedicated (not the loop's default executor, which serves the pipeline's own
  work) and never joined on the event loop's thread: they may be waiting for it.
- A re-judging asked for before the watchers exist (a reload between a failure and the
  restart) is kept and handed to the next ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from guardmail.channels.imap import sent
from guardmail.channels.imap.wake import IDLE_SLICE
from guardmail.channels.imap.watch import FolderWatcher
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.pipeline import Pipeline
from guardmail.storage.base import Storage


class ImapSource:
    """Every folder of one IMAP account, each watched by a FolderWatcher in its own thread."""

    def __init__(
        self,
        *,
        cfg: ImapSourceConfig,
        tenant: str,
        pipeline: Pipeline,
        storage: Storage,
        review_folder: str = "Review",
    ) -> None:
        self.cfg = cfg
        self.review_folder = review_folder
        self.tenant = tenant
        self.pipeline = pipeline
        self.storage = storage
        self._watchers: list[FolderWatcher | sent.AutoSent] = []
        self._rejudge_pending = False

    def rejudge(self) -> None:
        """The rules changed: every folder judges its existing mail again, at once (the event
        loop's thread; a reload). Between a failure and the restart, the next watchers do."""
        if not self._watchers:
            self._rejudge_pending = True
        for w in self._watchers:
            w.rejudge()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        watchers: list[FolderWatcher | sent.AutoSent] = [
            self._watcher(folder) for folder in self.cfg.folders
        ]
        watchers += [self._watcher(f, outgoing=True) for f in sent.outgoing_folders(self.cfg)]
        if self.cfg.sent_folders == "auto":
            watchers.append(
                sent.AutoSent(cfg=self.cfg, make=lambda f: self._watcher(f, outgoing=True))
            )
        self._watchers = watchers
        if self._rejudge_pending:
            self._rejudge_pending = False
            for w in watchers:
                w.rejudge()
        # Dedicated threads: the default executor is small and serves the pipeline's own work.
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(watchers), thread_name_prefix=f"imap-{self.cfg.name}"
        )
        futures = [loop.run_in_executor(pool, w.run) for w in watchers]
        try:
            await asyncio.gather(*futures)
        finally:
            self._watchers = []
            for w in watchers:
                w.stop()
            # Never block the loop on the threads: they may be waiting for it.
            await asyncio.wait(futures, timeout=IDLE_SLICE * 2)
            pool.shutdown(wait=False)

    def _watcher(self, folder: str, *, outgoing: bool = False) -> FolderWatcher:
        return FolderWatcher(
            cfg=self.cfg,
            folder=folder,
            tenant=self.tenant,
            pipeline=self.pipeline,
            storage=self.storage,
            review_folder=self.review_folder,
            outgoing=outgoing,
        )
