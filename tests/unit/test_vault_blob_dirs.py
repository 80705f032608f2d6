"""BlobStore remembers its fan-out directories (guardmail.vault.blobs): looked at once, made
again if removed since, forgotten at any failure; the blobs are the same either way."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from guardmail.vault import blobs as blobs_module
from guardmail.vault.blobs import BlobStore


def blobs(n: int, tag: str = "b") -> list[tuple[bytes, str]]:
    raws = [f"{tag} {k}".encode() * 3 for k in range(n)]
    return [(r, hashlib.sha256(r).hexdigest()) for r in raws]


def temps(root: Path) -> list[str]:
    return [n for _, _, names in os.walk(root) for n in names if n.endswith(".tmp")]


def looked(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory the store checks or makes."""
    seen: list[Path] = []
    real = BlobStore._make_dir

    def spy(parent: Path) -> bool:
        seen.append(parent)
        return real(parent)

    monkeypatch.setattr(BlobStore, "_make_dir", staticmethod(spy))
    return seen


@pytest.mark.parametrize("n", [3, blobs_module.SYNCFS_MIN + 4])  # per-file fsyncs; syncfs
def test_directories_are_looked_at_once_then_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    store = BlobStore(tmp_path / "blobs")
    seen = looked(monkeypatch)
    first = blobs(n)
    store.put_many(first)
    assert sorted(set(seen)) == sorted({store.path(s).parent for _, s in first})
    seen.clear()
    candidates = blobs(2000, "again")  # new blobs, a few of them in the same directories
    same_dirs = [(r, s) for r, s in candidates if store.path(s).parent in store._dirs][:n]
    store.put_many(same_dirs)
    assert same_dirs and seen == []  # every directory remembered: none looked at again
    for raw, sha in first + same_dirs:
        assert store.get(sha) == raw
    assert temps(tmp_path) == []


def test_a_remembered_directory_removed_since_is_made_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    first = blobs(5)
    store.put_many(first)
    gone = store.path(first[0][1]).parent
    shutil.rmtree(gone)
    store.put_many(first)  # its blob is written again in its directory, made again
    assert stat.S_IMODE(gone.stat().st_mode) == 0o700
    for raw, sha in first:
        assert store.get(sha) == raw
    assert gone in store._dirs
    assert temps(tmp_path) == []


def test_a_failure_forgets_every_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put_many(blobs(4))
    assert store._dirs

    def broken(fds: list[int]) -> None:
        raise OSError(errno.EIO, "fsync: Input/output error")

    monkeypatch.setattr(blobs_module, "fsync_all", broken)
    with pytest.raises(OSError, match="Input/output"):
        store.put_many(blobs(2, "next"))
    assert store._dirs == {}
    assert temps(tmp_path) == []
    monkeypatch.undo()
    seen = looked(monkeypatch)
    store.put_many(blobs(2, "next"))  # looked at again
    assert sorted(set(seen)) == sorted({store.path(s).parent for _, s in blobs(2, "next")})


def test_a_rename_failure_forgets_every_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put_many(blobs(4))

    def broken(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "rename: Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="rename"):
        store.put_many(blobs(2, "next"))
    assert store._dirs == {}


def test_a_missing_directory_not_remembered_is_an_error_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")

    def vanished(tmp: Path, data: bytes) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp))

    monkeypatch.setattr(blobs_module, "_write_unsynced", vanished)
    with pytest.raises(FileNotFoundError):
        store.put_many(blobs(2))


@pytest.mark.skipif(blobs_module._SYNCFS is None, reason="no syncfs in this libc")
def test_a_found_blobs_directory_is_known_to_the_syncfs_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path / "blobs")
    old = blobs(1, "old")
    store.put_many(old)
    where = store.path(old[0][1]).parent
    new = [b for b in blobs(400, "new") if store.path(b[1]).parent != where]
    new = new[: blobs_module.SYNCFS_MIN + 4]  # two syncfs: every directory on one file system
    stats: list[Path] = []
    real = Path.stat

    def spy(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(self)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", spy)
    store.put_many(old + new)  # the old blob found in place: its directory only touched
    assert where not in stats  # its st_dev remembered, not looked up again
    for raw, sha in old + new:
        assert store.get(sha) == raw
