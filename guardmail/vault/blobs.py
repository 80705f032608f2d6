"""Durable files, and the content-addressed blob store of the vault.

Contracts:
- ``write_durably`` replaces a file atomically and durably: temp file (unique per process and
  thread), fsync, rename, directory fsync.
- ``BlobStore`` keeps each blob as ``root/ab/abcdef...``, named by its SHA-256. Its paths are
  built in one place, ``path``, only from 64 lower-case hex digits; ``get`` returns bytes only if
  they hash to their name; ``put_many`` returns only when every blob's bytes and name are durable:
  each blob its own temp file, all of them made durable, renamed, then their names made durable (a
  regular file found under a blob's name counts only if it holds exactly its bytes; anything else
  there is replaced). A call with fewer than ``SYNCFS_MIN`` new blobs fsyncs each file (at once,
  in threads) and then each touched directory once; a larger one calls ``syncfs(2)`` on the blob
  store's file system twice instead (after the writes, after the renames): the same durability for
  every file on it, at the cost of two file-system commits rather than one fsync per file and per
  directory. Any error of either (EIO, ENOSPC, writeback errors since the call began) fails the
  whole call. Files are 0600, directories 0700. A ``BlobStore`` remembers the fan-out directories
  (``root/ab``) its calls found or made and then made durable, and skips looking at them again
  (two system calls a new blob); it forgets them all at any failure, and one removed since (by
  hand) is made again, its name made durable, within the call that finds it gone.
- ``put_many(..., writer=w)`` runs this same method in the blob writer child process ``w``
  (``guardmail.vault.blobwriter``): the same files, the same durability, failures as OSError.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from guardmail.errors import StateError
from guardmail.storage.files import private_dir
from guardmail.vault.pools import lazy_pool

if TYPE_CHECKING:
    from guardmail.vault.blobwriter import BlobWriter

_SHA256 = re.compile(r"[0-9a-f]{64}")
FSYNC_THREADS = 16  # fsyncs of one batch issued at once
# From this many new blobs in one call, two syncfs(2) replace the per-file and per-directory
# fsyncs. Measured on ext4 (bench/README.md, "syncfs"): 100 blobs ~5 ms against ~100 ms of
# fsyncs, 1,000 ~100 ms against ~400 ms; below ~32 the fsyncs are as cheap and do not flush
# what other programs left dirty on the same file system (a syncfs waits for that too).
SYNCFS_MIN = 32


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    # Unique per process and thread: two threads archiving at once must not share a temp file.
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _write_unsynced(tmp: Path, data: bytes) -> int:
    """``data`` written to a new temp file; its open descriptor (not fsync'd yet)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holds(path: Path, raw: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``raw``. A blob found in place is trusted only
    for its bytes, never for its name and size: a file changed since (by hand, or rotted) would
    otherwise stand for this archive, and the item be acted on without its evidence. It is then
    written again, like a new one. Unreadable counts as not holding them."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        view = memoryview(raw)
        at = 0
        while at < len(raw):
            chunk = os.read(fd, min(len(raw) - at, 1 << 20))
            if not chunk or chunk != view[at : at + len(chunk)]:
                return False
            at += len(chunk)
        return not os.read(fd, 1)
    except OSError:
        return False
    finally:
        os.close(fd)


def fsync_all(fds: list[int]) -> None:
    """fsync every descriptor; several at once, in threads: the file system then commits them
    in one journal transaction rather than one after the other (a group commit of blobs).
    Returns when all are durable; raises the first OSError after all were tried."""
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    errors = [e for e in _pool().map(_fsync_quiet, fds) if e is not None]
    if errors:
        raise errors[0]


def fsync_all_dirs(paths: list[Path]) -> None:
    """fsync every directory (at once where there are several), as ``fsync_all``."""
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY))
        fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        found = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux's libc: the per-file fsyncs are used
        return None
    found.argtypes = [ctypes.c_int]
    found.restype = ctypes.c_int
    return cast(Callable[[int], int], found)


_SYNCFS = _load_syncfs()


def syncfs(fd: int) -> None:
    """syncfs(2) on the file system of ``fd``: every dirty file and name on it durable, or
    OSError. Since Linux 5.8 it reports a writeback error of any file of that file system that
    happened after ``fd`` was opened (its ``f_sb_err``): open ``fd`` before writing what it must
    cover. Only called when ``_SYNCFS`` exists."""
    assert _SYNCFS is not None
    if _SYNCFS(fd) != 0:
        code = ctypes.get_errno() or errno.EIO
        raise OSError(code, f"syncfs: {os.strerror(code)}")


def _fsync_quiet(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


_pool = lazy_pool(FSYNC_THREADS, "fsync")


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file, fsync it and rename it to ``path`` (the directory entry is
    durable only once the caller fsyncs ``path.parent``)."""
    tmp = _temp_name(path)
    fd = _write_unsynced(tmp, data)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, dir fsync)."""
    write_synced(path, data)
    fsync_dir(path.parent)


class Laps:
    """Seconds between calls added to ``into[name]`` (the time since the previous call, or since
    it was made); nothing at all when ``into`` is None (the daemon's calls). The blob phase's
    steps, timed apart for bench/xmpp.py (bench/README.md, "xblob")."""

    __slots__ = ("_into", "_last")

    def __init__(self, into: dict[str, float] | None) -> None:
        self._into = into
        self._last = time.perf_counter() if into is not None else 0.0

    def __call__(self, name: str) -> None:
        if self._into is not None:
            now = time.perf_counter()
            self._into[name] = self._into.get(name, 0.0) + now - self._last
            self._last = now

    def count(self, name: str, n: int) -> None:
        if self._into is not None:
            self._into[name] = self._into.get(name, 0.0) + n


class BlobStore:
    """Content-addressed files under ``root``: ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # The fan-out directories a ``put_many`` of this object found or made and then made
        # durable, with their st_dev: the next calls skip their two checks a blob (bench/README.md,
        # "xblob"). Forgotten at any failure; one removed meanwhile is made again (``_create``).
        self._dirs: dict[Path, int] = {}

    def path(self, sha256: str) -> Path:
        """The blob's file; StateError unless ``sha256`` is 64 lower-case hex digits (a name read
        from the journal must never lead outside the vault)."""
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise StateError(
                f"{self.root}: {sha256!r} is not a SHA-256 (64 hex digits); "
                "the journal has been tampered with: run 'guardmail evidence verify'"
            )
        return self.root / sha256[:2] / sha256

    def put(self, raw: bytes, sha256: str) -> None:
        self.put_many([(raw, sha256)])

    def put_many(
        self,
        blobs: Iterable[tuple[bytes, str]],
        *,
        writer: BlobWriter | None = None,
        timing: dict[str, float] | None = None,
    ) -> None:
        """Store each (raw, sha256) durably; returning means every blob's name and bytes are on
        disk (see the module contract: per-file fsyncs, or two syncfs for many new blobs).
        ``writer``: done by that child process (``guardmail.vault.blobwriter``: this same
        method, run there), which fails with OSError as this would. ``timing``: seconds spent
        in each step added to it (``Laps``: benches, the blob writer's figures)."""
        if writer is not None:
            for _, sha256 in blobs:
                self.path(sha256)  # StateError here, as below, for a name that is no SHA-256
            writer.put_many(self.root, list(blobs))
            return
        # Few system calls a blob: this runs beside a busy event loop, and each call gives up
        # the GIL and may wait up to a switch interval (5 ms) to get it back (bench/README.md).
        touched: dict[Path, None] = {}  # ordered set
        devs: dict[Path, int] = {}  # directories of new blobs, checked: their st_dev
        pending: list[tuple[Path, Path, int]] = []  # (temp, target, fd)
        writing: set[Path] = set()
        made = whole = rooted = False
        fs_fd = -1  # the store's root, opened before any write: syncfs reports errors from then
        lap = Laps(timing)
        try:
            for raw, sha256 in blobs:
                target = self.path(sha256)
                parent = target.parent
                # Its directory is made durable even when the blob is already there: a call that
                # failed part-way may have renamed it into place without making the name durable.
                touched[parent] = None
                lap("prepare")
                try:
                    found = os.lstat(target)  # a link is no blob, whatever it points to
                except (FileNotFoundError, NotADirectoryError):
                    pass
                else:
                    if (
                        stat.S_ISREG(found.st_mode)
                        and found.st_size == len(raw)
                        and _holds(target, raw)
                    ):
                        lap("stat")
                        continue  # content-addressed: same name, same bytes
                lap("stat")
                if not rooted:
                    if not self.root.is_dir():
                        private_dir(self.root)
                        fsync_dir(self.root.parent)
                    if _SYNCFS is not None:
                        fs_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
                    rooted = True
                if parent not in devs:
                    known = self._dirs.get(parent)
                    if known is None:
                        made = self._make_dir(parent) or made
                        known = parent.stat().st_dev
                    devs[parent] = known
                if target in writing:
                    continue  # the same bytes twice in one call
                writing.add(target)
                tmp = _temp_name(target)
                lap("dirs")
                try:
                    fd = _write_unsynced(tmp, raw)
                except FileNotFoundError:
                    if parent not in self._dirs:
                        raise
                    # A remembered directory removed since (by hand: the vault never does): made
                    # again, and its name made durable below, as any new one.
                    self._dirs.clear()
                    made = self._make_dir(parent) or made
                    devs[parent] = parent.stat().st_dev
                    fd = _write_unsynced(tmp, raw)
                pending.append((tmp, target, fd))
                lap("create")
            whole = (
                fs_fd >= 0
                and len(pending) >= SYNCFS_MIN
                and self._one_fs(fs_fd, touched, devs, self._dirs)
            )
            if whole:
                syncfs(fs_fd)  # every temp file's bytes, and the new directories' names
            else:
                if made:
                    fsync_dir(self.root)
                fsync_all([fd for _, _, fd in pending])
            lap("sync1")
        except BaseException:
            self._dirs.clear()
            for tmp, _, _ in pending:
                tmp.unlink(missing_ok=True)  # none renamed yet: no blob of the call landed
            if fs_fd >= 0:
                os.close(fs_fd)
            raise
        finally:
            for _, _, fd in pending:
                os.close(fd)
            lap("close")
        try:
            for tmp, target, _ in pending:
                os.replace(tmp, target)
            lap("rename")
            if whole:
                syncfs(fs_fd)  # every renamed name (and the touched directories of blobs found)
            else:
                fsync_all_dirs(list(touched))
            lap("sync2")
            lap.count("blobs", len(pending))
        except BaseException:
            self._dirs.clear()
            raise
        finally:
            if fs_fd >= 0:
                os.close(fs_fd)
        self._dirs.update(devs)  # each one's name durable now (made, or found, then synced)

    @staticmethod
    def _make_dir(parent: Path) -> bool:
        """Make ``parent`` unless it is a directory; whether it was made (its name in the root
        is then made durable by the caller)."""
        if parent.is_dir():
            return False
        private_dir(parent)
        return True

    @staticmethod
    def _one_fs(
        fs_fd: int, dirs: Iterable[Path], devs: dict[Path, int], known: dict[Path, int]
    ) -> bool:
        """Whether every directory is on the file system of ``fs_fd`` (a syncfs covers only
        that one; a directory mounted below the store's root is fsync'd instead). ``devs``:
        the st_dev of the directories looked at by this call; ``known``: by earlier ones."""
        dev = os.fstat(fs_fd).st_dev

        def of(d: Path) -> int:
            found = devs.get(d)
            if found is None:
                found = known.get(d)
            return d.stat().st_dev if found is None else found

        return all(of(d) == dev for d in dirs)

    def get(self, sha256: str) -> bytes:
        """The blob's bytes. StateError if it is missing or does not hash to its name; OSError if
        it cannot be read."""
        path = self.path(sha256)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise StateError(f"blob {sha256} is missing from the vault ({path})") from None
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise StateError(f"blob {sha256} is altered (SHA-256 mismatch) ({path})")
        return raw

    def directories(self) -> list[Path]:
        """The blob directories (``root/ab``) as they are on disk."""
        try:
            return sorted(Path(e.path) for e in os.scandir(self.root) if e.is_dir())
        except FileNotFoundError:
            return []
