"""Where a bundle's files go: a folder or a zip, written beside the target and renamed into place.

Contracts:
- ``open_sink(path, now)`` refuses a path that already exists (evidence is never overwritten) and
  picks the zip form when the name ends in ``.zip``.
- ``add`` hashes what it writes; ``sums`` lists (name, SHA-256) in the order added.
- ``commit`` makes the bundle appear at its path complete; ``abort`` removes every trace. Until
  ``commit`` nothing exists at the path.
- A zip holds one top-level folder named after the zip (``case.zip`` -> ``case/...``), so that
  unzipping it never scatters files; every member is stamped ``now`` and mode 0600.
- Folders are 0700 and files 0600: the bundle holds someone's private correspondence.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Protocol

from guardmail.vault.blobs import fsync_dir


class Sink(Protocol):
    path: Path
    sums: list[tuple[str, str]]

    def add(self, name: str, data: bytes) -> str:
        """Write ``data`` as bundle-relative ``name``; return its SHA-256."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


class FolderSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sums: list[tuple[str, str]] = []
        self._tmp = _partial(path)
        self._tmp.mkdir(mode=0o700)
        self._dirs: set[Path] = {self._tmp}

    def add(self, name: str, data: bytes) -> str:
        target = self._tmp / name
        if target.parent not in self._dirs:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        digest = hashlib.sha256(data).hexdigest()
        self.sums.append((name, digest))
        return digest

    def commit(self) -> None:
        # One rename makes the whole folder appear; the vault, not the bundle, is the durable copy,
        # so the files are not fsync'd one by one (20,000 fsyncs would dominate the export).
        os.rename(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


class ZipSink:
    def __init__(self, path: Path, now: datetime) -> None:
        self.path = path
        self.sums: list[tuple[str, str]] = []
        self.root = path.name[: -len(".zip")] or "bundle"
        self._stamp = (max(now.year, 1980), now.month, now.day, now.hour, now.minute, now.second)
        self._tmp = _partial(path)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, name: str, data: bytes) -> str:
        info = zipfile.ZipInfo(f"{self.root}/{name}", date_time=self._stamp)
        info.external_attr = 0o100600 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data, compresslevel=6)
        digest = hashlib.sha256(data).hexdigest()
        self.sums.append((name, digest))
        return digest

    def commit(self) -> None:
        self._zip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.rename(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        self._zip.close()
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def is_zip_path(path: Path) -> bool:
    return path.name.lower().endswith(".zip")


def open_sink(path: Path, now: datetime) -> FolderSink | ZipSink:
    """A sink for ``path``; FileExistsError if something is there already."""
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{path} already exists; exports never overwrite")
    if is_zip_path(path):
        return ZipSink(path, now)
    return FolderSink(path)
