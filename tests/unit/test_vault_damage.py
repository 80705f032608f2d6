"""A damaged vault: what is found wrong is noted and named, what cannot be written is
``VaultUnavailable`` (never a crash, never a silent success), and archiving goes on wherever the
evidence can still be kept (invariants 1, 4 and 5)."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from guardmail import logs
from guardmail.errors import StateError, VaultUnavailable
from guardmail.storage.base import TimestampRow
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.head import HEAD_FILE, TAMPER_FILE
from guardmail.vault.keyfetch import StaticResolver
from guardmail.vault.receipts import ReceiptChecker
from guardmail.vault.signing import KEY_FILE, load_key
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def vault(tmp_path: Path, storage: SQLiteStorage) -> Vault:
    return Vault(tmp_path / "vault" / "jane", storage, "jane")


def put(vault: Vault, n: int) -> int:
    return vault.put(b"message %d\r\n" % n, source_ref=f"new/{n}", metadata={}, now=NOW).seq


def messages(vault: Vault) -> list[str]:
    return [p.message for p in verify_vault(vault)]


def test_a_broken_head_is_noted_once_before_the_append_that_rewrites_it(vault: Vault) -> None:
    put(vault, 1)
    head = vault.root / HEAD_FILE
    head.write_bytes(b"\xffgarbage\n")
    with pytest.raises(StateError, match="not a HEAD witness"):
        vault.head_witness()
    assert put(vault, 2) == 2  # archiving goes on; HEAD is rewritten, the damage noted
    (note,) = vault.tamper_notes()
    assert "not a HEAD witness (expected 'SEQ SHA256', found '(not ASCII)')" in note
    head.write_bytes(b"\xffgarbage\n")  # the same damage again: the same note, once
    put(vault, 3)
    assert vault.tamper_notes() == [note]
    assert [m for m in messages(vault) if TAMPER_FILE in m] == [
        f"{vault.root / TAMPER_FILE}: {note}"
    ]


def test_a_head_naming_an_entry_the_journal_lacks_or_holds_otherwise_is_noted(
    vault: Vault,
) -> None:
    put(vault, 1)
    head = vault.root / HEAD_FILE
    head.write_text(f"1 {'a' * 64}\n")
    put(vault, 2)
    head.write_text(f"9 {'b' * 64}\n")
    put(vault, 3)
    assert vault.tamper_notes() == [
        "HEAD names entry 1, which the journal (ending at 1) holds with another hash",
        "HEAD names entry 9, which the journal (ending at 2) does not hold",
    ]
    assert vault.head_witness() == (3, vault.rows()[-1].hash)


def test_a_tree_head_key_of_another_kind_is_named_and_archiving_goes_on(vault: Vault) -> None:
    put(vault, 1)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (vault.root / KEY_FILE).write_bytes(pem)
    with pytest.raises(StateError, match="not an Ed25519 key"):
        load_key(vault.root)
    fresh = Vault(vault.root, vault.storage, vault.tenant)  # as after a restart
    assert put(fresh, 2) == 2
    assert any("not an Ed25519 key" in m for m in messages(fresh))
    assert any("journaled without a signed tree head" in n for n in fresh.tamper_notes())


def test_an_entry_naming_a_blob_by_no_sha256_and_an_unreadable_blob_are_named(
    vault: Vault,
) -> None:
    sha = vault.put(b"kept\r\n", source_ref="new/1", metadata={}, now=NOW).sha256
    row = vault.record("note", {"text": "x"}, sha256="../../etc/passwd", now=NOW)
    blob = vault.blobs.path(sha)
    blob.unlink()
    blob.mkdir()  # a directory where the blob was: open() fails with an OSError
    found = messages(vault)
    assert "names blob '../../etc/passwd', not a SHA-256" in found
    assert any(m.startswith(f"blob {sha} unreadable: ") for m in found)
    assert row.seq == 2


def test_a_head_that_cannot_be_written_is_vault_unavailable(vault: Vault) -> None:
    put(vault, 1)
    head = vault.root / HEAD_FILE
    head.unlink()
    head.mkdir()
    with pytest.raises(VaultUnavailable, match="cannot write HEAD"):
        vault.witness()


def test_a_vault_directory_that_is_a_file_cannot_be_sealed_and_is_untidy_at_open(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    root = tmp_path / "vault" / "jane"
    root.parent.mkdir()
    root.write_bytes(b"not a directory")
    vault = Vault(root, storage, "jane")
    seen: list[tuple[str, int, dict[str, Any]]] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        seen.append((name, level, fields))

    logs.add_listener(listen)
    try:
        vault.open()  # logged, not fatal: archiving then fails and items stay where they are
    finally:
        logs.remove_listener(listen)
    ((name, level, fields),) = [s for s in seen if s[0] == "vault.untidy"]
    assert level == logging.WARNING and fields["vault"] == str(root)
    with pytest.raises(VaultUnavailable, match="cannot sign a tree head"):
        vault.seal(now=NOW)
    with pytest.raises(VaultUnavailable, match="cannot archive"):
        put(vault, 1)
    assert vault.rows() == []


def test_a_timestamp_that_cannot_be_kept_is_vault_unavailable(
    vault: Vault, storage: SQLiteStorage
) -> None:
    put(vault, 1)
    with sqlite3.connect(storage.path) as other:  # a damaged database: its table is gone
        other.execute("DROP TABLE tree_head_timestamps")
    other.close()
    row = TimestampRow(
        tenant="jane", tree_size=1, token=b"t", gen_time=NOW.isoformat(), tsa_url="", ca_pem=""
    )
    with pytest.raises(VaultUnavailable, match="cannot keep a timestamp"):
        vault.keep_timestamp(row)


def test_a_receipt_check_that_cannot_be_recorded_is_logged_and_the_worker_goes_on(
    storage: SQLiteStorage, caplog: pytest.LogCaptureFixture
) -> None:
    checker = ReceiptChecker(storage=storage, tenant="jane", resolver=StaticResolver({}))
    raw = b"From: a@example.net\r\n\r\nhi\r\n"
    with sqlite3.connect(storage.path) as other:  # a damaged database: its table is gone
        other.execute("DROP TABLE receipt_checks")
    other.close()
    seen: list[tuple[str, dict[str, Any]]] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        seen.append((name, fields))

    logs.add_listener(listen)
    try:
        with caplog.at_level(logging.ERROR, logger="guardmail"):
            assert checker.submit(seq=1, sha256="a" * 64, raw=raw)
            assert checker.drain(30)
            assert checker.submit(seq=2, sha256="b" * 64, raw=raw)  # the worker is still there
            assert checker.drain(30)
    finally:
        logs.remove_listener(listen)
        checker.close()
    assert [f["seq"] for n, f in seen if n == "receipt.unrecorded"] == [1, 2]
    # Logged once each, as an error, and the worker took the next one.
    assert [r.message for r in caplog.records if r.message.startswith("receipt.")] == [
        "receipt.unrecorded"
    ] * 2


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("[1]", "journal entry 1 is not a JSON object"),
        ('{"seq":1,"kind":5}', "kind 5 is not text"),
        ('{"seq":1,"kind":"archived","sha256":["x"]}', "sha256 ['x'] is not text"),
    ],
)
def test_an_entry_whose_body_was_replaced_is_unreadable_for_readers_and_named_by_verify(
    vault: Vault, storage: SQLiteStorage, body: str, why: str
) -> None:
    put(vault, 1)
    with sqlite3.connect(storage.path) as other:
        other.execute("UPDATE journal SET body = ? WHERE seq = 1", (body,))
    other.close()
    with pytest.raises(
        StateError, match=r"journal entry 1 of vault .* is unreadable \(" + re.escape(why)
    ):
        vault.rows()
    assert "content altered (hash mismatch)" in messages(vault)


def test_an_entry_naming_its_blob_by_a_list_is_named_by_verify_not_a_crash(
    vault: Vault, storage: SQLiteStorage
) -> None:
    # Rewritten with a correct chain hash: only the blob check sees it. It used to raise
    # TypeError (a list is not hashable) and stop 'guardmail evidence verify' with a traceback.
    put(vault, 1)
    (row,) = vault.stored_rows()
    body = json.loads(row.body)
    body["sha256"] = ["a" * 64]
    text = journal.canonical_json(body)
    with sqlite3.connect(storage.path) as other:
        other.execute(
            "UPDATE journal SET body = ?, hash = ? WHERE seq = 1",
            (text, journal.chain_hash(row.prev_hash, text)),
        )
    other.close()
    found = messages(vault)
    assert f"names blob {['a' * 64]!r:.80}, not a SHA-256" in found
