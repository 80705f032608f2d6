"""Maildir source: watches ``new/`` and ``cur/`` of a local Maildir and carries out verdicts.

Contracts:
- Protocol I/O only: files become Items, verdicts become renames or unlinks. Deciding and archiving
  happen in the pipeline, which calls ``act`` only after the vault holds the bytes.
- Quarantine renames the file, unchanged and under the same name (so its flags survive), into
  the Maildir++ folder ``.<quarantine_folder>`` (created if missing, owned like the Maildir), into
  ``new/`` or ``cur/`` as it was. Review (a suspected alias) does the same into
  ``.<review_folder>``; ``restore`` moves a file from there back, unchanged, where it was.
  Block unlinks it. Both fsync the directories involved. Clean mail is never touched.
- A file the vault could not take stays where it is and is retried on its own backoff
  (``VAULT_RETRY``: 1 s doubling to a minute), however busy the Maildir is; a rescan or an event
  for it before it is due does not retry it sooner.
- Every file present at start-up is judged, as is every file that appears later (watchdog events,
  plus a rescan every ``rescan_seconds`` in case an event is missed, due however much new mail
  keeps arriving). ``rejudge`` (the rules changed) has every file judged again at once.
- Only regular files are read. A FIFO, device, socket or symlink in new/ or cur/ is never opened
  for a blocking read and never followed (lstat, then O_NONBLOCK | O_NOFOLLOW and fstat): it is
  logged once and skipped, so it can neither stall the source nor hold up a stop.
- One file cannot stop the watching of the others: building its Item, deciding, archiving and
  acting are contained per file; on an unexpected error the file stays where it is (logged,
  retried at the next rescan).
- The same message is archived once however a client renames it: the vault's dedupe scope is the
  Maildir and the file's unique name, without folder (new/, cur/) and flags (``:2,S``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from guardmail import faults
from guardmail.core.backoff import Backoff
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.vault.blobs import fsync_dir

_SUBDIRS = ("new", "cur")


def unique_name(name: str) -> str:
    """The part of a Maildir file name that stays when a client changes its flags."""
    return name.split(":", 1)[0]


def ensure_maildir(path: Path, *, like: Path | None = None) -> None:
    """Create ``path`` with tmp/new/cur if missing, owned and moded like ``like`` if given.

    A folder we create inside someone's Maildir must be usable by their mail server: when we
    run as root, it gets the Maildir owner's uid/gid and permissions instead of root's.
    """
    ref = like.stat() if like is not None else None
    for d in (path, path / "tmp", path / "new", path / "cur"):
        if d.is_dir():
            continue
        d.mkdir(mode=ref.st_mode & 0o777 if ref else 0o700, parents=True, exist_ok=True)
        if ref is not None and os.geteuid() == 0 and (ref.st_uid, ref.st_gid) != (0, 0):
            os.chown(d, ref.st_uid, ref.st_gid)


def read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file, else None (never blocks, never follows a
    symlink). OSError as ``open`` raises it (FileNotFoundError when it went away)."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return None
    # Swapped for a FIFO or symlink since the lstat: O_NONBLOCK opens a FIFO without waiting for
    # a writer, O_NOFOLLOW refuses a symlink (ELOOP), fstat tells what was opened.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read()


class _Events(FileSystemEventHandler):
    """Hands paths that appear in new/ or cur/ to the asyncio loop (watchdog runs in a thread)."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Path]):
        self._dirs = {str(root / sub) for sub in _SUBDIRS}
        self._loop = loop
        self._queue = queue

    def _offer(self, raw_path: bytes | str) -> None:
        path = os.fsdecode(raw_path)
        if os.path.dirname(path) in self._dirs:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, Path(path))

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._offer(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._offer(event.dest_path)


# Retrying a file the vault refused: soon, then less often while the vault stays down.
VAULT_RETRY = Backoff(base=1.0, cap=60.0)


class MaildirSource:
    reviews = True  # it holds suspected aliases in the review folder (pipeline.Actor)

    def __init__(
        self,
        *,
        path: Path,
        account: str,
        tenant: str,
        pipeline: Pipeline,
        quarantine_folder: str = "Quarantine",
        review_folder: str = "Review",
        rescan_seconds: float = 30.0,
    ) -> None:
        self.root = path
        self.account = account
        self.tenant = tenant
        self.pipeline = pipeline
        self.quarantine = path / f".{quarantine_folder}"
        self.review = path / f".{review_folder}"
        self.rescan_seconds = rescan_seconds
        self._passed: set[str] = set()
        self._skipped: set[str] = set()  # files that are not regular files, logged once
        self._queue: asyncio.Queue[Path] = asyncio.Queue()
        self._rescan_now = False  # set by rejudge(): the run loop scans before the next file
        # Files the vault refused, by unique name: (path, failures so far, when to retry).
        self._retry: dict[str, tuple[Path, int, float]] = {}

    async def run(self) -> None:
        ensure_maildir(self.root)
        observer = Observer()
        observer.schedule(
            _Events(self.root, asyncio.get_running_loop(), self._queue),
            str(self.root),
            recursive=True,
        )
        observer.start()
        event("maildir.watching", account=self.account, path=str(self.root))
        try:
            await self.reconcile()
            await self.scan()
            await self._watch()
        finally:
            observer.stop()
            await asyncio.to_thread(observer.join)

    async def _watch(self) -> None:
        """Files as they appear; a full scan when asked for or due; vault retries when due.

        Neither a scan nor a retry waits for a quiet spell: on a busy Maildir they come
        between two new files.
        """
        clock = asyncio.get_running_loop().time
        next_scan = clock() + self.rescan_seconds
        while True:
            if self._rescan_now or clock() >= next_scan:
                self._rescan_now = False
                await self.scan()
                next_scan = clock() + self.rescan_seconds
                continue
            for key, (path, _, due) in list(self._retry.items()):
                if due <= clock() and key in self._retry:
                    await self.handle(path)
            wake = min([next_scan, *(due for _, _, due in self._retry.values())])
            try:
                # Not asyncio.wait_for: in Python 3.11 it swallows a cancellation that comes as
                # the queue hands over a file, and the source then never stops (test_no_wait_for).
                async with asyncio.timeout(max(wake - clock(), 0)):
                    path = await self._queue.get()
            except TimeoutError:
                continue
            await self.handle(path)

    def rejudge(self) -> None:
        """Forget which files were clean and judge every file by the current rules, at once
        (those waiting for the vault too)."""
        self._passed.clear()
        self._retry = {key: (path, n, 0.0) for key, (path, n, _) in self._retry.items()}
        self._rescan_now = True
        self._queue.put_nowait(self.root / "new")  # wakes the loop; not a file, so ignored

    async def scan(self) -> None:
        for sub in _SUBDIRS:
            try:
                names = sorted(
                    e.name
                    for e in os.scandir(self.root / sub)
                    if not e.is_dir(follow_symlinks=False)
                )
            except FileNotFoundError:
                ensure_maildir(self.root)
                continue
            except OSError as exc:
                event(
                    "maildir.unreadable",
                    level=logging.ERROR,
                    file=str(self.root / sub),
                    error=str(exc),
                )
                continue
            for name in names:
                await self.handle(self.root / sub / name)

    async def handle(self, path: Path) -> None:
        if path.name.startswith(".") or path.parent.name not in _SUBDIRS:
            return
        key = unique_name(path.name)
        if key in self._passed:
            return
        waiting = self._retry.get(key)
        if waiting is not None and waiting[2] > asyncio.get_running_loop().time():
            # Refused by the vault and not due again yet: a rescan (or a client renaming the
            # file) must not defeat the backoff. Remember where it is now for the retry.
            self._retry[key] = (path, waiting[1], waiting[2])
            return
        failures = self._retry.pop(key, (path, 0, 0.0))[1]  # back if the vault refuses again
        ref = f"{path.parent.name}/{path.name}"
        try:
            raw = await asyncio.to_thread(read_regular, path)
        except (FileNotFoundError, IsADirectoryError):
            return  # moved or removed meanwhile: its new name, if any, comes as its own event
        except OSError as exc:
            # Unreadable (permissions, I/O error): one file must not stop the watching of the
            # rest. It stays where it is and is tried again at the next rescan.
            event("maildir.unreadable", level=logging.ERROR, file=str(path), error=str(exc))
            return
        if raw is None:
            if ref not in self._skipped:
                self._skipped.add(ref)
                event(
                    "maildir.not_a_regular_file",
                    level=logging.WARNING,
                    file=str(path),
                    detail="a FIFO, device, socket or symlink: skipped, never opened",
                )
            return
        try:
            item = mail_item(
                raw,
                tenant=self.tenant,
                account=self.account,
                source_ref=ref,
                received_at=datetime.now(UTC),
                meta=(("maildir", str(self.root)), ("file", ref)),
                dedupe_scope=f"maildir:{self.root}:{key}",
            )
            outcome = await self.pipeline.process(item, self)
        except VaultUnavailable as exc:
            wait = VAULT_RETRY.delay(failures, rand=random.random())
            due = asyncio.get_running_loop().time() + wait
            self._retry[key] = (path, failures + 1, due)
            event(
                "maildir.vault_unavailable",
                level=logging.WARNING,
                account=self.account,
                file=ref,
                retry_in=round(wait, 1),
                error=str(exc),
            )
            return
        except OSError as exc:
            event("maildir.act_failed", level=logging.ERROR, file=ref, error=str(exc))
            return
        except Exception:
            # A bug (in building the item, deciding, archiving or acting) must not stop the
            # watching of everything else: the file stays where it is, is retried at the next
            # rescan, and the traceback is logged (never the content).
            logging.getLogger("guardmail").exception(
                "maildir.item_failed", extra={"gm_fields": {"file": ref}}
            )
            return
        if outcome.verdict.action is Action.PASS:
            self._passed.add(key)

    def _locate(self, source_ref: str) -> Path | None:
        """The file now, even if a client renamed it (flags) or moved it from new/ to cur/."""
        sub, _, name = source_ref.partition("/")
        path = self.root / sub / name
        if path.exists():
            return path
        key = unique_name(name)
        for s in _SUBDIRS:
            for entry in os.scandir(self.root / s):
                if unique_name(entry.name) == key:
                    return Path(entry.path)
        return None

    async def act(self, item: Item, verdict: Verdict) -> str:
        return await asyncio.to_thread(self._act, item, verdict)

    def _act(self, item: Item, verdict: Verdict) -> str:
        path = self._locate(item.source_ref)
        if path is None:
            return "already gone from the Maildir"
        sub = path.parent.name
        if verdict.action is Action.BLOCK:
            path.unlink()
            faults.reached("maildir.moved")
            fsync_dir(path.parent)
            return f"deleted {sub}/{path.name}"
        folder = self.review if verdict.action is Action.REVIEW else self.quarantine
        return move_into(self.root, path, folder)

    # After a crash between an action and its journal entry (pipeline.reconcile). Kept apart
    # from the watching above: it only reads where files are, once, before the first scan.
    async def reconcile(self) -> None:
        """Journal the actions a crash kept from the journal; log, never raise, if it cannot."""
        try:
            await self.pipeline.reconcile(self.where_now)
        except (VaultUnavailable, OSError) as exc:
            event(
                "maildir.reconcile_failed",
                level=logging.ERROR,
                account=self.account,
                error=str(exc),
            )

    def where_now(self, body: dict[str, Any]) -> str | None:
        """Where an item this Maildir archived is now; None if not ours or still in place (the
        first scan then acts on it through the pipeline, which journals that action)."""
        meta, ref = body.get("meta"), body.get("source_ref")
        if not isinstance(meta, dict) or meta.get("maildir") != str(self.root):
            return None
        if not isinstance(ref, str) or self._locate(ref) is not None:
            return None
        key = unique_name(ref.partition("/")[2])
        for folder in (self.quarantine, self.review):
            found = find_in(folder, key)
            if found is not None:
                return f"in {folder.name}/{found.parent.name}/{found.name}"
        return "gone from the Maildir"


def find_in(folder: Path, key: str) -> Path | None:
    """The file of unique name ``key`` in the Maildir(++ folder) ``folder``'s new/ or cur/."""
    for sub in _SUBDIRS:
        try:
            names = [e.name for e in os.scandir(folder / sub)]
        except FileNotFoundError:
            continue
        for name in names:
            if unique_name(name) == key:
                return folder / sub / name
    return None


def move_into(root: Path, path: Path, folder: Path) -> str:
    """Rename ``path`` (in ``root``'s new/ or cur/) unchanged into the Maildir++ ``folder`` of
    ``root`` (made if missing, owned like ``root``), into the same sub-directory; fsync both."""
    sub = path.parent.name
    ensure_maildir(folder, like=root)
    marker = folder / "maildirfolder"
    if not marker.exists():
        marker.touch(mode=0o600)
        st = root.stat()
        if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
            os.chown(marker, st.st_uid, st.st_gid)
        fsync_dir(root)
    target = folder / sub / path.name
    os.rename(path, target)
    faults.reached("maildir.moved")
    fsync_dir(target.parent)
    fsync_dir(path.parent)
    return f"moved to {folder.name}/{sub}/{path.name}"


def restore(root: Path, folder: Path, key: str) -> Path | None:
    """Move the file of unique name ``key`` from the Maildir++ ``folder`` back, unchanged and
    under its name, into ``root``'s new/ or cur/ (as it was in the folder); its new path, or
    None if the folder does not hold it."""
    found = find_in(folder, key)
    if found is None:
        return None
    target = root / found.parent.name / found.name
    os.rename(found, target)
    fsync_dir(target.parent)
    fsync_dir(found.parent)
    return target
