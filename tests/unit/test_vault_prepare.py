"""``Vault.prepare`` at a daemon's start: a brand-new vault's GENESIS HEAD made before its
first item waits for it, with the vault's contract unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.daemon.tenant import Preparer
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.head import HEAD_FILE
from guardmail.vault.journal import GENESIS
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "db.sqlite3")
    yield s
    s.close()


def test_a_new_vault_gets_its_genesis_head_before_any_item(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    vault.open()
    vault.prepare()
    assert (vault.root / HEAD_FILE).read_bytes() == f"0 {GENESIS}\n".encode()
    assert (vault.root / HEAD_FILE).stat().st_mode & 0o777 == 0o600
    assert verify_vault(vault) == [] and vault.tamper_notes() == []
    receipt = vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    assert vault.blobs.get(receipt.sha256) == b"first"
    assert verify_vault(vault) == [] and vault.tamper_notes() == []


def test_a_vault_in_use_is_left_as_it_is(tmp_path: Path, storage: SQLiteStorage) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    head = (vault.root / HEAD_FILE).read_bytes()
    vault.prepare()
    assert (vault.root / HEAD_FILE).read_bytes() == head != f"0 {GENESIS}\n".encode()
    assert verify_vault(vault) == []


def test_a_head_removed_from_a_vault_with_entries_is_noted_not_made_genesis(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    (vault.root / HEAD_FILE).unlink()
    vault.prepare()
    assert not (vault.root / HEAD_FILE).exists()  # the next append rewrites it, as before
    assert any("HEAD missing" in note for note in vault.tamper_notes())


def test_a_vault_that_cannot_be_prepared_is_logged_not_raised(
    tmp_path: Path, storage: SQLiteStorage, caplog: pytest.LogCaptureFixture
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    vault.root.write_bytes(b"not a directory")
    vault.prepare()
    assert "vault.unprepared" in caplog.text
    assert not (vault.root / HEAD_FILE).exists()


def test_the_daemons_preparer_makes_new_vaults_heads_after_the_start_in_its_thread(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vaults = [Vault(tmp_path / "vault" / f"t{n}", storage, f"t{n}") for n in range(5)]
    preparer = Preparer()
    for vault in vaults:
        vault.open()
        preparer.add(vault)
    assert preparer.wait(30)
    assert all((v.root / HEAD_FILE).read_bytes() == f"0 {GENESIS}\n".encode() for v in vaults)
    preparer.add(vaults[0])  # the thread ended with the queue; another starts
    assert preparer.wait(30)
