"""The blob writer child (guardmail.vault.blobwriter): a large group's blob files written by
another process, with the same durability, and a child that dies failing its group as a whole."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.errors import VaultUnavailable
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.blobs import BlobStore
from guardmail.vault.blobwriter import BlobWriter
from guardmail.vault.group import WRITER_MIN, GroupCommitter
from guardmail.vault.store import Archive, Receipt, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def writer() -> Iterator[BlobWriter]:
    w = BlobWriter()
    yield w
    w.close()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "state.db")
    yield Vault(tmp_path / "vault", storage, "alice")
    storage.close()


def blobs(n: int, tag: str = "") -> list[tuple[bytes, str]]:
    raws = [b"message %d %s\r\n" % (i, tag.encode()) + bytes(range(256)) for i in range(n)]
    return [(raw, hashlib.sha256(raw).hexdigest()) for raw in raws]


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def gone(pid: int) -> bool:
    """Whether the process has ended and can be reaped: its leader a zombie and no other thread
    left (the child's fsync pool threads end after the leader shows as a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().split(") ")[1].startswith("Z")
        return zombie and os.listdir(f"/proc/{pid}/task") == [str(pid)]
    except FileNotFoundError:
        return True


def test_the_child_writes_every_blob_exactly_private_and_in_place(
    tmp_path: Path, writer: BlobWriter
) -> None:
    from guardmail.vault import blobwriter

    store = BlobStore(tmp_path / "blobs")
    many = blobs(50) + [(b"", hashlib.sha256(b"").hexdigest())]
    with blobwriter.TIMES_LOCK:
        before = dict(blobwriter.TIMES)
    store.put_many(many, writer=writer)
    store.put_many(many[:3] + blobs(2, "more"), writer=writer)  # found in place, and new ones
    assert writer.started == 1 and writer.pid is not None
    with blobwriter.TIMES_LOCK:
        after = dict(blobwriter.TIMES)
    # the benches' figures: both requests, the new blobs counted by the child, each step timed
    assert after["groups"] - before.get("groups", 0) == 2
    assert after["child.blobs"] - before.get("child.blobs", 0) == 53
    for step in ("pack", "send", "wait", "total", "child.recv", "child.create", "child.sync2"):
        assert after[step] > before.get(step, 0.0)
    for raw, sha in many + blobs(2, "more"):
        assert store.get(sha) == raw
        assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o600
        assert stat.S_IMODE(store.path(sha).parent.stat().st_mode) == 0o700
    assert temps(tmp_path) == []


def test_an_error_in_the_child_is_an_oserror_with_its_errno(
    tmp_path: Path, writer: BlobWriter
) -> None:
    (tmp_path / "blobs").write_bytes(b"a file where the store's directory should be")
    with pytest.raises(OSError) as caught:
        BlobStore(tmp_path / "blobs").put_many(blobs(10), writer=writer)
    assert caught.value.errno in (20, 17)  # ENOTDIR or EEXIST, from the child
    BlobStore(tmp_path / "other").put_many(blobs(10), writer=writer)  # the child lives on
    assert writer.started == 1


def test_a_child_dead_between_groups_is_replaced_before_the_next(
    tmp_path: Path, writer: BlobWriter
) -> None:
    store = BlobStore(tmp_path / "blobs")
    store.put_many(blobs(10, "a"), writer=writer)
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    while not gone(first):
        time.sleep(0.01)
    store.put_many(blobs(10, "b"), writer=writer)  # nothing was in flight: nothing fails
    assert writer.started == 2 and writer.pid != first
    assert all(store.get(sha) == raw for raw, sha in blobs(10, "b"))


def test_a_child_killed_mid_group_fails_the_whole_group_and_the_retry_journals_it(
    tmp_path: Path, vault: Vault, writer: BlobWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child is killed (SIGKILL, by guardmail.faults) once its blobs are durable and renamed,
    # before it answers: the parent sees end of file.
    monkeypatch.setenv("GUARDMAIL_FAULT", "vault.writer:1")
    archives = [Archive(raw=raw, source_ref=f"x:{sha[:8]}") for raw, sha in blobs(20)]
    with pytest.raises(VaultUnavailable, match="blob writer"):
        vault.commit(archives, now=NOW, witness=True, writer=writer)
    assert vault.rows() == []  # nothing of the group journaled
    assert temps(tmp_path) == []
    monkeypatch.delenv("GUARDMAIL_FAULT")
    done = vault.commit(archives, now=NOW, witness=True, writer=writer)
    assert [d.seq for d in done if isinstance(d, Receipt)] == list(range(1, 21))
    assert writer.started == 2
    assert verify_vault(vault) == []


def test_the_committer_hands_large_groups_to_a_child_it_ends_with_its_thread(
    vault: Vault,
) -> None:
    group = GroupCommitter(vault)
    small = [Archive(raw=raw, source_ref=f"s:{sha[:8]}") for raw, sha in blobs(WRITER_MIN - 1)]
    group.commit(small, now=NOW)
    deadline = time.monotonic() + 10
    while group.shared._running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group.writers == 0  # written in the committer thread
    large = [Archive(raw=raw, source_ref=f"l:{sha[:8]}") for raw, sha in blobs(WRITER_MIN, "l")]
    group.commit(large, now=NOW)
    while group.writers == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the thread ends once idle, and closes its child
    assert group.writers == 1
    assert len(vault.rows()) == 2 * WRITER_MIN - 1
    assert verify_vault(vault) == []


# The child's side, run here in a thread over pipes (coverage does not follow the child process):
# the same requests the parent sends, the same answers it reads.


def _serve_once(request: bytes) -> tuple[dict[str, object] | None, BaseException | None]:
    """``request`` (one or more) to ``_serve`` and its answer; the end of file then ends it."""
    import json
    import threading

    from guardmail.vault import blobwriter

    req_r, req_w = os.pipe()
    ans_r, ans_w = os.pipe()
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            blobwriter._serve(req_r, ans_w)
        except BaseException as exc:  # SystemExit for a request that does not add up
            failed.append(exc)
        finally:
            os.close(ans_w)

    thread = threading.Thread(target=serve)
    thread.start()
    os.write(req_w, request)
    os.close(req_w)
    size = blobwriter._read_exact(ans_r, blobwriter._ANSWER.size)
    body = blobwriter._read_exact(ans_r, blobwriter._ANSWER.unpack(size)[0]) if size else None
    thread.join(10)
    os.close(req_r)
    os.close(ans_r)
    return (json.loads(body) if body else None), (failed[0] if failed else None)


def _request(
    root: Path, blobs: list[tuple[bytes, str]], *, sizes: list[int] | None = None
) -> bytes:
    import json

    from guardmail.vault import blobwriter

    header = json.dumps(
        {
            "root": str(root),
            "shas": [s for _, s in blobs],
            "sizes": sizes if sizes is not None else [len(r) for r, _ in blobs],
        }
    ).encode()
    payload = b"".join(r for r, _ in blobs)
    return blobwriter._REQUEST.pack(len(header), len(payload)) + header + payload


def test_the_child_side_writes_a_request_and_answers_ok(tmp_path: Path) -> None:
    raws = [f"stanza {i}".encode() for i in range(3)]
    blobs = [(r, hashlib.sha256(r).hexdigest()) for r in raws]
    answer, failed = _serve_once(_request(tmp_path / "blobs", blobs))
    assert failed is None and answer is not None
    assert answer["ok"] is True
    # the steps of the blob phase, timed apart for the benches (blobwriter.TIMES)
    laps = answer["t"]
    assert isinstance(laps, dict)
    assert {"recv", "stat", "create", "sync1", "rename", "sync2"} <= set(laps)
    assert laps["blobs"] == 3
    store = BlobStore(tmp_path / "blobs")
    assert [store.get(s) for _, s in blobs] == raws


def test_the_child_side_answers_a_bad_name_and_an_unwritable_store_with_an_errno(
    tmp_path: Path,
) -> None:
    import errno

    answer, _ = _serve_once(_request(tmp_path / "blobs", [(b"x", "not-a-sha256")]))
    assert answer is not None and answer["errno"] == errno.EINVAL
    (tmp_path / "file").write_bytes(b"")  # a file where the store's directory would be
    raw = b"y"
    answer, _ = _serve_once(_request(tmp_path / "file", [(raw, hashlib.sha256(raw).hexdigest())]))
    assert answer is not None and isinstance(answer["errno"], int) and answer["errno"] != 0


def test_the_child_side_stops_at_a_request_whose_sizes_do_not_add_up(tmp_path: Path) -> None:
    raw = b"z"
    bad = _request(tmp_path / "blobs", [(raw, hashlib.sha256(raw).hexdigest())], sizes=[5])
    answer, failed = _serve_once(bad)
    assert answer is None
    assert isinstance(failed, SystemExit)


def test_a_child_whose_parent_is_already_gone_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from guardmail.vault import blobwriter

    monkeypatch.setattr(sys, "argv", ["blobwriter", str(os.getppid() + 1_000_000)])

    def no_prctl(*args: object, **kwargs: object) -> None:
        raise OSError("no prctl here")  # and never on pytest's own process: no parent-death signal

    monkeypatch.setattr("guardmail.vault.blobwriter.ctypes.CDLL", no_prctl)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert blobwriter.main() == 0  # not our parent: it returns before reading anything
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_request_pipe_is_widened_where_allowed_and_works_where_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from guardmail.vault import blobwriter

    big = [(b"%d" % i + bytes(600_000), "") for i in range(3)]  # more than one 64 KiB pipe
    big = [(r, hashlib.sha256(r).hexdigest()) for r, _ in big]
    store = BlobStore(tmp_path / "blobs")
    w = BlobWriter()
    try:
        store.put_many(big[:1], writer=w)
        proc = w._proc
        assert proc is not None and proc.stdin is not None
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        if limit >= blobwriter.PIPE_BYTES:
            got = fcntl.fcntl(proc.stdin.fileno(), fcntl.F_GETPIPE_SZ)
            assert got == blobwriter.PIPE_BYTES
    finally:
        w.close()

    def refused(*args: object) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(fcntl, "fcntl", refused)
    w = BlobWriter()
    try:
        store.put_many(big, writer=w)  # the default size: the same request in more steps
    finally:
        w.close()
    for raw, sha in big:
        assert store.get(sha) == raw
    assert temps(tmp_path) == []
