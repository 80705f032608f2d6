"""guardmail's state directory is private and tidy: 0700 directories, 0600 files, whatever the
umask; a too-open directory is tightened with a warning; dead writers' temp files go at start."""

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.config.settings import Settings
from guardmail.daemon.observe import Board
from guardmail.daemon.tenant import DB_FILE, open_tenant
from guardmail.logs import add_listener, remove_listener
from guardmail.storage.sqlite import SQLiteStorage

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DEAD_PID = 4_194_305  # above the kernel's largest pid_max: never a running process


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        seen.append((name, fields))

    add_listener(listen)
    yield seen
    remove_listener(listen)


def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "srv" / "state", tenant="jane")


def test_every_directory_is_0700_and_every_file_0600_after_opening_and_archiving(
    tmp_path: Path, open_umask: None
) -> None:
    s = settings(tmp_path)
    tenant = open_tenant(s)
    try:
        receipt = tenant.vault.put(b"From: x@y\r\n\r\nz", source_ref="new/1", metadata={}, now=NOW)
        tenant.vault.record("action", {"archived_seq": receipt.seq}, now=NOW)
        Board(vault_root=tenant.vault.root, tenant="jane").write(s.state_dir)
        state, vault = s.state_dir, tenant.vault.root
        blob = tenant.vault.blobs.path(receipt.sha256)
        dirs = [state, state / "vault", vault, vault / "blobs", blob.parent]
        assert {str(d): oct(mode(d)) for d in dirs} == {str(d): oct(0o700) for d in dirs}
        files = [p for p in state.rglob("*") if p.is_file()]
        assert {state / DB_FILE, blob, vault / "HEAD", state / "status.json"} <= set(files)
        assert {str(f): oct(mode(f)) for f in files} == {str(f): oct(0o600) for f in files}
    finally:
        tenant.close()


def test_a_state_and_vault_directory_and_database_open_to_others_are_tightened(
    tmp_path: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    s = settings(tmp_path)
    vault = s.state_dir / "vault" / "jane"
    vault.mkdir(parents=True)
    for d in (s.state_dir, s.state_dir / "vault", vault):
        d.chmod(0o755)
    (s.state_dir / DB_FILE).write_bytes(b"")  # an empty file is an empty SQLite database
    (s.state_dir / DB_FILE).chmod(0o644)
    open_tenant(s).close()
    assert mode(s.state_dir / DB_FILE) == 0o600
    for d in (s.state_dir, s.state_dir / "vault", vault):
        assert mode(d) == 0o700
    tightened = [f for name, f in events if name == "state.permissions_tightened"]
    assert [(f["path"], f["was"]) for f in tightened] == [
        (str(d), "0755") for d in (s.state_dir, s.state_dir / "vault", vault)
    ]


def test_temp_files_of_a_dead_writer_are_removed_at_start_and_no_others(tmp_path: Path) -> None:
    s = settings(tmp_path)
    tenant = open_tenant(s)
    receipt = tenant.vault.put(b"x", source_ref="new/1", metadata={}, now=NOW)
    tenant.close()
    blob_dir = tenant.vault.blobs.path(receipt.sha256).parent
    stale = [
        s.state_dir / f".status.json.{DEAD_PID}.1.tmp",
        tenant.vault.root / f".HEAD.{DEAD_PID}.7.tmp",
        blob_dir / f".{receipt.sha256}.{DEAD_PID}.9.tmp",
    ]
    kept = [
        blob_dir / f".{receipt.sha256}.{os.getppid()}.9.tmp",  # its writer still runs
        tenant.vault.root / f".HEAD.{DEAD_PID}.8.tmp",  # written since we started
        s.state_dir / "notes.tmp",  # not one of ours
    ]
    past = time.time() - 3600
    for path in stale + kept:
        path.write_bytes(b"partial")
        os.utime(path, (past, past))
    os.utime(kept[1])  # now
    open_tenant(s).close()
    assert [p for p in stale if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []


def test_opening_a_second_storage_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    # Closing any descriptor of a database file drops every POSIX lock the process holds on
    # it: a tenant opened on reload beside the others used to strip their shared lock, so
    # another process's connection, closing, believed itself the last one, checkpointed and
    # deleted the write-ahead log under the daemon's feet (a malformed database).
    path = tmp_path / "state" / "guardmail.sqlite3"
    wal = path.with_name(path.name + "-wal")
    first = SQLiteStorage(path)
    try:
        with first.transaction() as tx:
            tx.set_cursor("t", "s", "n", "v")
        assert wal.exists()
        SQLiteStorage(path).close()  # a second tenant opened beside the first
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys\n"
                "c = sqlite3.connect(sys.argv[1])\n"
                "c.execute('SELECT count(*) FROM cursors').fetchall()\n"
                "c.close()\n",
                str(path),
            ],
            timeout=60,
            check=True,
        )
        assert wal.exists(), "another process deleted the log of a database we have open"
    finally:
        first.close()
