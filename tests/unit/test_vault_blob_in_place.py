"""A blob file found under its name is trusted for its bytes, not its size: one changed since
(by hand, or rotted) is written again, so the archive that found it holds its evidence."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import pytest

from guardmail.errors import StateError
from guardmail.vault.blobs import BlobStore
from guardmail.vault.blobwriter import BlobWriter

RAW = b"From: offender@evil.example\r\nSubject: again\r\n\r\nthe same bytes, sent twice\r\n"
SHA = hashlib.sha256(RAW).hexdigest()


def _spoil(path: Path, data: bytes) -> None:
    os.chmod(path, 0o600)
    path.write_bytes(data)


@pytest.mark.parametrize(
    "spoiled",
    [
        bytes(len(RAW)),  # same size, other bytes: a size check alone would keep it
        RAW[:-1] + b"X",  # one byte changed, at the end
        b"",
    ],
    ids=["zeros", "last-byte", "empty"],
)
@pytest.mark.parametrize("via", ["thread", "writer"])
def test_a_changed_file_under_a_blobs_name_is_written_again(
    tmp_path: Path, spoiled: bytes, via: str
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put(RAW, SHA)
    path = store.path(SHA)
    _spoil(path, spoiled)
    with pytest.raises(StateError):  # get refuses bytes that do not hash to the name
        store.get(SHA)
    if via == "writer":
        writer = BlobWriter()
        try:
            store.put_many([(RAW, SHA)], writer=writer)
        finally:
            writer.close()
    else:
        store.put_many([(RAW, SHA)])
    assert path.read_bytes() == RAW
    assert store.get(SHA) == RAW
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_blob_holding_its_bytes_is_left_as_it_is(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put(RAW, SHA)
    path = store.path(SHA)
    before = os.stat(path)
    store.put_many([(RAW, SHA)])
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_link_under_the_name_is_replaced_by_the_blob_even_if_it_points_to_its_bytes(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put(RAW, SHA)
    path = store.path(SHA)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(RAW)  # right bytes today, anything tomorrow
    path.unlink()
    os.symlink(elsewhere, path)
    store.put_many([(RAW, SHA)])
    assert not path.is_symlink() and path.read_bytes() == RAW
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_file_that_cannot_be_read_back_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put(RAW, SHA)
    path = store.path(SHA)
    before = os.stat(path).st_ino

    def unreadable(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", unreadable)
    store.put_many([(RAW, SHA)])
    monkeypatch.undo()
    assert os.stat(path).st_ino != before and path.read_bytes() == RAW
