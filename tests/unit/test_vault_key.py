"""The tree-head key is loaded only to sign (issue 27): a daemon's start checks the key file
without cryptography, a tenant's first append makes or loads it, and a key that cannot be made
is VaultUnavailable (the item stays where it is), never a crash."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guardmail.daemon.tenant import seal_log
from guardmail.errors import StateError, VaultUnavailable
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import signing
from guardmail.vault.group import GroupCommitter, SharedCommitter
from guardmail.vault.head import TAMPER_FILE
from guardmail.vault.signing import KEY_FILE, check_key, load_key, make_key
from guardmail.vault.store import Receipt, Vault
from guardmail.vault.verify import verify_vault
from tests.unit.test_vault_group_tenants import archive, held

NOW = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "state" / "guardmail.sqlite3")
    yield s
    s.close()


@pytest.fixture
def vault(tmp_path: Path, storage: SQLiteStorage) -> Vault:
    return Vault(tmp_path / "state" / "vault" / "jane", storage, "jane")


def pkcs8(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem(der: bytes) -> bytes:
    return b"-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % base64.b64encode(der)


def test_check_key_accepts_what_make_key_writes_and_names_what_is_not_a_key(
    tmp_path: Path,
) -> None:
    assert check_key(tmp_path) is False  # never made
    for _ in range(20):  # the PEM make_key_file writes is cryptography's, byte for byte
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        assert signing._pem(signing._PKCS8_ED25519 + seed) == pkcs8(key)
    for _ in range(20):
        (tmp_path / KEY_FILE).write_bytes(pkcs8(Ed25519PrivateKey.generate()))
        assert check_key(tmp_path) is True
    (tmp_path / KEY_FILE).unlink()
    make_key(tmp_path)
    assert check_key(tmp_path) is True
    good = (tmp_path / KEY_FILE).read_bytes()
    # Another spelling of the same key is loaded by cryptography, which accepts it.
    (tmp_path / KEY_FILE).write_bytes(good.replace(b"\n", b"\r\n"))
    assert check_key(tmp_path) is True
    damaged = [
        b"not a key\n",
        pem(bytes.fromhex("302e020100300506032b656e04220420") + bytes(32)),  # an X25519 key
        good[:40] + b"!" + good[41:],  # not base64
        good[:-30] + b"\n-----END PRIVATE KEY-----\n",  # cut
        pkcs8(ec.generate_private_key(ec.SECP256R1())),
    ]
    for data in damaged:
        (tmp_path / KEY_FILE).write_bytes(data)
        with pytest.raises(StateError):
            load_key(tmp_path)
        with pytest.raises(StateError):
            check_key(tmp_path)


def test_a_start_makes_the_key_file_and_the_first_append_signs_with_it(
    vault: Vault, storage: SQLiteStorage
) -> None:
    seal_log(vault, now=NOW)  # what a daemon does at its start
    assert check_key(vault.root) is True  # made there (not loaded)
    assert stat.S_IMODE((vault.root / KEY_FILE).stat().st_mode) == 0o600
    first = (vault.root / KEY_FILE).read_bytes()
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    assert (vault.root / KEY_FILE).read_bytes() == first
    assert [h.tree_size for h in vault.tree_heads()] == [1]
    assert verify_vault(vault) == []
    again = Vault(vault.root, storage, "jane")  # a restart: the key is checked, not loaded
    seal_log(again, now=NOW)
    again.put(b"second", source_ref="new/2", metadata={}, now=NOW)
    assert [h.tree_size for h in again.tree_heads()] == [1, 2]
    assert verify_vault(again) == []


def test_without_a_start_the_first_append_makes_the_key(vault: Vault) -> None:
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    assert load_key(vault.root) is not None
    assert [h.tree_size for h in vault.tree_heads()] == [1]
    assert verify_vault(vault) == []


def test_a_damaged_key_is_noted_at_start_before_any_append(
    vault: Vault, storage: SQLiteStorage
) -> None:
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    (vault.root / KEY_FILE).write_bytes(b"not a key\n")
    fresh = Vault(vault.root, storage, "jane")
    seal_log(fresh, now=NOW)
    assert any("not a tree-head key" in n for n in fresh.tamper_notes())
    assert [h.tree_size for h in fresh.tree_heads()] == [1]
    receipt = fresh.put(b"still archived", source_ref="new/2", metadata={}, now=NOW)
    assert fresh.blobs.get(receipt.sha256) == b"still archived"
    assert (fresh.root / TAMPER_FILE).read_text().count("not a tree-head key") == 1


def test_a_key_that_cannot_be_made_at_the_first_append_is_vault_unavailable(
    vault: Vault,
) -> None:
    vault.root.mkdir(parents=True)
    (vault.root / KEY_FILE).mkdir()  # where the key would be written: not a file
    with pytest.raises(VaultUnavailable, match="cannot sign a tree head"):
        vault.seal(now=NOW, start=True)
    with pytest.raises(VaultUnavailable, match="cannot archive"):
        vault.put(b"held", source_ref="new/1", metadata={}, now=NOW)
    assert vault.rows() == []  # nothing journaled: the item stays where it is
    (vault.root / KEY_FILE).rmdir()
    vault.put(b"held", source_ref="new/1", metadata={}, now=NOW)  # the retry archives it
    assert [h.tree_size for h in vault.tree_heads()] == [1]


def test_in_a_group_a_tenant_whose_key_cannot_be_made_fails_alone(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = (Vault(tmp_path / "v" / n, storage, n) for n in ("alice", "bob"))
    shared = SharedCommitter("test")
    a, b = GroupCommitter(alice, shared), GroupCommitter(bob, shared)
    bob.root.mkdir(parents=True)
    (bob.root / KEY_FILE).mkdir()  # bob's first append cannot make his key
    holding, release = held(alice, monkeypatch)
    first = a.submit([archive("alice", 0)], now=NOW)
    assert holding.wait(10)
    fine = a.submit([archive("alice", 1)], now=NOW)
    keyless = b.submit([archive("bob", 0)], now=NOW)  # in one group with alice's second
    release.set()
    first.result(10)
    assert fine.result(10)[0].seq == 2
    with pytest.raises(VaultUnavailable):
        keyless.result(10)
    assert bob.rows() == []  # rolled back alone: the item stays where it is
    (bob.root / KEY_FILE).rmdir()
    (again,) = b.submit([archive("bob", 0)], now=NOW).result(10)
    assert isinstance(again, Receipt) and again.seq == 1 and not again.duplicate
    assert verify_vault(bob) == [] and verify_vault(alice) == []


def test_a_start_leaves_an_uncovered_journal_sealed_with_the_key_made(
    vault: Vault, storage: SQLiteStorage
) -> None:
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    storage._conn.execute("DELETE FROM tree_heads")  # as a journal from before the log
    (vault.root / KEY_FILE).unlink()
    seal_log(Vault(vault.root, storage, "jane"), now=NOW)
    assert load_key(vault.root) is not None
    assert [h.tree_size for h in vault.tree_heads()] == [1]


PROBE = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from guardmail import logs
from guardmail.daemon.tenant import seal_log
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.signing import KEY_FILE
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

root = Path(sys.argv[1])
storage = SQLiteStorage(root / "guardmail.sqlite3")
vault = Vault(root / "vault" / "jane", storage, "jane")
seal_log(vault)  # the key file made (a first start) or checked (a restart)
vault.prepare()  # the Preparer, after the start: a new vault's GENESIS HEAD
seen = ["cryptography" in sys.modules, (vault.root / KEY_FILE).is_file()]
vault.put(b"offender mail", source_ref=sys.argv[2], metadata={}, now=datetime.now(UTC))
seen.append("cryptography" in sys.modules)
heads = [h.tree_size for h in vault.tree_heads()]
print(json.dumps({"seen": seen, "heads": heads, "problems": len(verify_vault(vault))}))
storage.close()
"""


def test_cryptography_is_imported_at_the_first_append_not_at_start(tmp_path: Path) -> None:
    for n in (1, 2):  # a first start (no key yet), then a restart (a key to check)
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(tmp_path), f"new/{n}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.splitlines()[-1])
        assert result == {
            "seen": [False, True, True],
            "heads": list(range(1, n + 1)),
            "problems": 0,
        }


def test_two_makers_agree_on_one_key_and_a_vanished_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_key(tmp_path)
    theirs = (tmp_path / KEY_FILE).read_bytes()
    with monkeypatch.context() as m:
        m.setattr(signing, "check_key", lambda root: False)  # missing when this maker looked
        signing.make_key_file(tmp_path, load=False)
    assert (tmp_path / KEY_FILE).read_bytes() == theirs  # the first one stands
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temp file left
    monkeypatch.setattr(signing, "load_key", lambda root: None)  # removed right after
    with pytest.raises(StateError, match="vanished right after it was made"):
        make_key(tmp_path)


def test_a_damaged_key_is_logged_once_until_the_file_changes(
    vault: Vault, storage: SQLiteStorage, caplog: pytest.LogCaptureFixture
) -> None:
    vault.put(b"first", source_ref="new/1", metadata={}, now=NOW)
    good = (vault.root / KEY_FILE).read_bytes()
    (vault.root / KEY_FILE).write_bytes(b"not a key\n")
    fresh = Vault(vault.root, storage, "jane")
    with caplog.at_level("ERROR", logger="guardmail"):
        fresh.put(b"second", source_ref="new/2", metadata={}, now=NOW)
        fresh.put(b"third", source_ref="new/3", metadata={}, now=NOW)
    assert caplog.text.count("vault.tampered") == 1  # the blobs and the head ask: one line
    assert [h.tree_size for h in fresh.tree_heads()] == [1]
    caplog.clear()
    (vault.root / KEY_FILE).write_bytes(good)  # restored by the operator: signing resumes
    with caplog.at_level("ERROR", logger="guardmail"):
        fresh.put(b"fourth", source_ref="new/4", metadata={}, now=NOW)
    assert "vault.tampered" not in caplog.text
    assert [h.tree_size for h in fresh.tree_heads()] == [1, 4]
