"""Readers of mail kept in files: an mbox, a folder of .eml files, a Maildir.

mbox (what is kept and why):
- A message starts at a ``From `` line at the start of the file or after an empty line (the
  From_ line); its bytes are everything after that line up to the next From_ line, exactly as
  in the file, including the empty line mbox writers put before the next From_ line (whether
  that line is the message's own cannot be told from the file, so nothing is guessed away).
- The From_ line is no part of the message: it is kept as provenance in the entry's metadata
  (``mbox_from_line``, at most ``FROM_LINE_KEPT`` bytes), with the item's byte offset.
- Body lines quoted as ``>From `` are archived quoted, as the file holds them: whether a writer
  quoted them (mboxo, mboxrd) or the sender wrote them cannot be known, so unquoting could
  change the evidence; their number is noted (``mbox_quoted_from_lines``).
- The file is read in pieces of at most ``PIECE`` bytes, never a whole line at once: a message
  over the bound is hashed as it streams past and skipped (``Found.raw`` None).

Maildir: the files of ``cur/`` and ``new/`` (``tmp/`` holds deliveries in progress), each keyed by
its unique name (the part before ``:2,``, which flag changes leave alone) and its SHA-256.
A folder of .eml: every ``*.eml`` file under it, keyed by its relative path and SHA-256.
Only regular files are read (no symlinks followed); each file's size is checked before reading.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from guardmail.imports import MAX_ITEM_BYTES, Found, UnreadableSource

PIECE = 64 * 1024
FROM_LINE_KEPT = 998  # RFC 5322's line length: more is no honest From_ line
_FROM = b"From "
_QUOTED = b">From "


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    """The file opened for reading (never through a symlink) and its size; UnreadableSource."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableSource(f"{path}: cannot be read ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnreadableSource(f"{path}: not a regular file")
    return os.fdopen(fd, "rb"), st.st_size


class Mbox:
    """One mbox file (see the module docstring)."""

    kind = "mbox"

    def __init__(self, path: Path, *, max_item: int = MAX_ITEM_BYTES) -> None:
        self.path = path
        self.name = str(path)
        self.max_item = max_item
        self.total: int | None = None
        with _open_regular(path)[0] as f:
            head = f.read(len(_FROM))
        if head and head != _FROM:
            raise UnreadableSource(
                f"{path}: not an mbox file (it starts with {head!r}, not a 'From ' line)"
            )

    def items(self) -> Iterator[Found]:
        f, self.total = _open_regular(self.path)
        with f:
            yield from read_mbox(f, max_item=self.max_item)


def read_mbox(f: BinaryIO, *, max_item: int = MAX_ITEM_BYTES) -> Iterator[Found]:
    """The messages of an mbox stream (see the module docstring), in order. Bytes before the
    first From_ line are no message (``Mbox`` refuses a file that does not start with one)."""
    start = -1  # offset of the current message's From_ line
    from_line = b""
    parts: list[bytes] | None = []
    size = quoted = 0
    digest = hashlib.sha256()
    at_line_start = True
    prev_empty = True  # the start of the file counts as after an empty line
    in_from_line = False
    pos = 0
    while True:
        piece = f.readline(PIECE)
        if not piece or (at_line_start and prev_empty and piece.startswith(_FROM)):
            if start >= 0:
                yield _found(start, from_line, parts, size, quoted, digest, pos)
            if not piece:
                return
            start, from_line, parts, size, quoted = pos, b"", [], 0, 0
            digest = hashlib.sha256()
            in_from_line = True
        pos += len(piece)
        if in_from_line:
            if len(from_line) < FROM_LINE_KEPT:
                from_line += piece[: FROM_LINE_KEPT - len(from_line)]
        else:
            if at_line_start and piece.startswith(_QUOTED):
                quoted += 1
            digest.update(piece)
            size += len(piece)
            if parts is not None:
                parts.append(piece)
                if size > max_item:
                    parts = None  # over the bound: hash the rest, keep nothing
        ended = piece.endswith(b"\n")
        if ended:
            # The line just ended was empty only if this piece is all of it.
            empty = at_line_start and piece in (b"\n", b"\r\n")
            prev_empty = empty and not in_from_line
            in_from_line = False
        at_line_start = ended


def _found(
    start: int,
    from_line: bytes,
    parts: list[bytes] | None,
    size: int,
    quoted: int,
    digest: hashlib._Hash,
    pos: int,
) -> Found:
    sha = digest.hexdigest()
    meta: tuple[tuple[str, str], ...] = (
        ("mbox_offset", str(start)),
        ("mbox_from_line", from_line.rstrip(b"\r\n").decode("utf-8", "replace")),
    )
    if quoted:
        meta += (("mbox_quoted_from_lines", str(quoted)),)
    raw = b"".join(parts) if parts is not None else None
    return Found(key=f"{start}:{sha}", raw=raw, size=size, sha256=sha, position=pos, meta=meta)


def _read_file(path: Path, max_item: int) -> tuple[bytes | None, int, str]:
    """(bytes or None if over ``max_item``, size, SHA-256) of a regular file, read in pieces."""
    f, _ = _open_regular(path)
    digest = hashlib.sha256()
    parts: list[bytes] | None = []
    size = 0
    with f:
        while piece := f.read(PIECE * 16):
            digest.update(piece)
            size += len(piece)
            if parts is not None:
                parts.append(piece)
                if size > max_item:
                    parts = None
    return (b"".join(parts) if parts is not None else None), size, digest.hexdigest()


def _regular_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise UnreadableSource(f"{folder}: cannot be listed ({exc.strerror})") from None
    return [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]


class _Files:
    kind = ""

    def __init__(self, path: Path, *, max_item: int = MAX_ITEM_BYTES) -> None:
        if not path.is_dir():
            raise UnreadableSource(f"{path}: not a folder")
        self.path = path
        self.name = str(path)
        self.max_item = max_item
        self.total: int | None = None

    def files(self) -> list[tuple[str, Path]]:
        raise NotImplementedError

    def items(self) -> Iterator[Found]:
        listed = self.files()
        sizes = [p.lstat().st_size for _, p in listed]
        self.total = sum(sizes)
        pos = 0
        for (name, path), size in zip(listed, sizes, strict=True):
            try:
                raw, size, sha = _read_file(path, self.max_item)
            except (UnreadableSource, FileNotFoundError):
                continue  # gone or replaced since it was listed: nothing of it to import
            pos += size
            yield Found(
                key=f"{name}:{sha}",
                raw=raw,
                size=size,
                sha256=sha,
                position=pos,
                meta=((f"{self.kind}_file", name),),
            )


class EmlFolder(_Files):
    """Every ``*.eml`` file under a folder, in path order."""

    kind = "eml"

    def files(self) -> list[tuple[str, Path]]:
        found: list[tuple[str, Path]] = []
        for root, dirs, _ in os.walk(self.path):
            dirs.sort()
            for p in _regular_files(Path(root)):
                if p.name.lower().endswith(".eml"):
                    found.append((str(p.relative_to(self.path)), p))
        return found


class MaildirFolder(_Files):
    """The messages of one Maildir folder (``cur/`` and ``new/``)."""

    kind = "maildir"

    def __init__(self, path: Path, *, max_item: int = MAX_ITEM_BYTES) -> None:
        super().__init__(path, max_item=max_item)
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise UnreadableSource(f"{path}: not a Maildir (no cur/ and new/ folders)")

    def files(self) -> list[tuple[str, Path]]:
        found = [
            (p.name.split(":2,", 1)[0], p)
            for sub in ("cur", "new")
            for p in _regular_files(self.path / sub)
            if not p.name.startswith(".")
        ]
        return sorted(found)
