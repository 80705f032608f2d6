"""Durable files, and the content-addressed blob store of the vault.

Contracts:
- ``write_durably`` replaces a file atomically and durably: temp file (unique per process and
  thread), fsync, rename, directory fsync.
- ``BlobStore`` keeps each blob as ``root/ab/abcdef...``, named by its SHA-256. Its paths are
  built in one place, ``path``, only from 64 lower-case hex digits; ``get`` returns bytes only
  if they hash to their name; ``put_many`` returns only when every blob's bytes and name are
  durable: each blob its own temp file, all of them fsync'd (at once, in threads), renamed, then
  the directories fsync'd once each. Files are 0600, directories 0700.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from guardmail.errors import StateError
from guardmail.storage.files import private_dir

_SHA256 = re.compile(r"[0-9a-f]{64}")
FSYNC_THREADS = 16  # fsyncs of one batch issued at once


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


def _fsync_quiet(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="fsync")
        return _POOL


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


class BlobStore:
    """Content-addressed files under ``root``: ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = root

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

    def put_many(self, blobs: Iterable[tuple[bytes, str]]) -> None:
        """Store each (raw, sha256) durably; the directories are fsync'd once each, at the end,
        so that returning means every blob's name and bytes are on disk. Each blob is its own
        temp file, fsync'd, then renamed; several blobs' fsyncs run at once (``fsync_all``)."""
        touched: dict[Path, None] = {}  # ordered set
        pending: list[tuple[Path, Path, int]] = []  # (temp, target, fd)
        writing: set[Path] = set()
        made = False
        try:
            for raw, sha256 in blobs:
                target = self.path(sha256)
                # Its directory is fsync'd even when the blob is already there: a call that
                # failed part-way may have renamed it into place without making the name durable.
                touched[target.parent] = None
                if target.is_file() and target.stat().st_size == len(raw):
                    continue  # content-addressed: same name, same bytes (verify re-hashes)
                if not self.root.is_dir():
                    private_dir(self.root)
                    fsync_dir(self.root.parent)
                if not target.parent.is_dir():
                    private_dir(target.parent)
                    made = True  # its name in root is made durable once, below
                if target in writing:
                    continue  # the same bytes twice in one call
                writing.add(target)
                tmp = _temp_name(target)
                pending.append((tmp, target, _write_unsynced(tmp, raw)))
            if made:
                fsync_dir(self.root)
            fsync_all([fd for _, _, fd in pending])
        except BaseException:
            for tmp, _, _ in pending:
                tmp.unlink(missing_ok=True)  # none renamed yet: no blob of the call landed
            raise
        finally:
            for _, _, fd in pending:
                os.close(fd)
        for tmp, target, _ in pending:
            os.replace(tmp, target)
        fsync_all_dirs(list(touched))

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
