"""The journal as a signed Merkle log: a head per commit, verified; a rewritten history whose
chain and HEAD were recomputed is caught by the heads; old journals are sealed in place."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guardmail.core.merkle import Tree, leaf_hash, verify_consistency, verify_inclusion
from guardmail.daemon.tenant import seal_log
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.head import HEAD_FILE
from guardmail.vault.journal import GENESIS, check_chain
from guardmail.vault.signing import KEY_FILE, load_key, signature_valid
from guardmail.vault.store import Archive, Vault
from guardmail.vault.treelog import CURSOR_SOURCE, FRONTIER, leaf
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "state" / "guardmail.sqlite3")
    yield s
    s.close()


@pytest.fixture
def vault(tmp_path: Path, storage: SQLiteStorage) -> Vault:
    return Vault(tmp_path / "state" / "vault" / "jane", storage, "jane")


def fill(vault: Vault, n: int = 5) -> None:
    for i in range(n):
        vault.put(f"item {i}".encode(), source_ref=f"new/{i}", metadata={}, now=NOW)


def sql(storage: SQLiteStorage, statement: str, args: tuple[object, ...] = ()) -> None:
    storage._conn.execute(statement, args)  # tampering from outside, with file access


def test_every_commit_signs_a_head_over_the_whole_journal(vault: Vault) -> None:
    fill(vault, 3)
    vault.put_many([Archive(raw=b"a", source_ref="a"), Archive(raw=b"b", source_ref="b")], now=NOW)
    vault.record("action", {"archived_seq": 1}, now=NOW + timedelta(seconds=1))
    heads = vault.tree_heads()
    assert [h.tree_size for h in heads] == [1, 2, 3, 5, 6]  # the batch of two: one head
    rows = vault.stored_rows()
    tree = Tree(leaf_hash(r.body.encode()) for r in rows)
    key = load_key(vault.root)
    assert key is not None
    for h in heads:
        assert h.root_hash == tree.root(h.tree_size).hex()
        assert signature_valid(key.public_key(), h)
    assert heads[-1].time == (NOW + timedelta(seconds=1)).isoformat()
    assert verify_vault(vault) == []


def test_the_key_is_private_and_made_once(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault, 1)
    path = vault.root / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    again = Vault(vault.root, storage, "jane")
    again.put(b"later", source_ref="x", metadata={}, now=NOW)
    assert path.read_bytes() == before
    assert verify_vault(again) == []


def test_each_item_has_an_inclusion_proof_and_heads_are_consistent(vault: Vault) -> None:
    fill(vault, 7)
    rows = vault.stored_rows()
    heads = vault.tree_heads()
    tree = Tree(leaf(r) for r in rows)
    last = heads[-1]
    for i, row in enumerate(rows):
        path = tree.inclusion_path(i, last.tree_size)
        root = bytes.fromhex(last.root_hash)
        assert verify_inclusion(index=i, size=7, leaf=leaf(row), path=path, root=root)
    for a, b in zip(heads, heads[1:], strict=False):
        assert verify_consistency(
            first=a.tree_size,
            second=b.tree_size,
            first_root=bytes.fromhex(a.root_hash),
            second_root=bytes.fromhex(b.root_hash),
            proof=tree.consistency_proof(a.tree_size, b.tree_size),
        )


def rewrite_history(vault: Vault, storage: SQLiteStorage, seq: int) -> None:
    """The attack the plain chain cannot see: entry ``seq`` rewritten (its source, body and index
    columns alike), then every chain hash after it and the HEAD witness recomputed, so that the
    chain is whole again."""
    sql(
        storage,
        "UPDATE journal SET body = replace(body, 'new/', 'old/'), "
        "source_ref = replace(source_ref, 'new/', 'old/'), scope = replace(scope, 'new/', 'old/') "
        "WHERE seq = ?",
        (seq,),
    )
    prev = GENESIS
    for row in vault.stored_rows():
        digest = journal.chain_hash(prev, row.body)
        sql(storage, "UPDATE journal SET prev_hash = ?, hash = ? WHERE seq = ?",
            (prev, digest, row.seq))  # fmt: skip
        prev = digest
    (vault.root / HEAD_FILE).write_text(f"{row.seq} {prev}\n")


def test_a_rewritten_entry_with_the_chain_and_head_recomputed_is_named_by_its_head(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault, 5)
    rewrite_history(vault, storage, 3)
    assert check_chain(vault.stored_rows()) == []  # the plain chain sees nothing
    problems = [str(p) for p in verify_vault(vault, blobs=False)]
    assert problems == [
        "entry 3: the signed tree head over entries 1-3 (signed 2026-12-02T09:00:00+00:00) does "
        "not match the journal (and 2 later heads): entry 3 was changed after it was signed",
        "entry 3: no consistency proof from the journal joins the head over entries 1-2 to the "
        "signed tree head over entries 1-3 (signed 2026-12-02T09:00:00+00:00) (and 1 later pair)",
    ]


def test_a_forged_head_signature_is_named(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault, 3)
    sql(storage, "UPDATE tree_heads SET signature = ? WHERE tree_size = 2", ("00" * 64,))
    problems = [str(p) for p in verify_vault(vault, blobs=False)]
    assert problems == [
        "entry 2: the signed tree head over entries 1-2 (signed 2026-12-02T09:00:00+00:00): "
        "signature does not verify"
    ]


def test_heads_deleted_leave_entries_no_head_covers(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault, 3)
    sql(storage, "DELETE FROM tree_heads WHERE tree_size > 1")
    problems = [str(p) for p in verify_vault(vault, blobs=False)]
    assert len(problems) == 1 and "entries 2-3 are covered by no signed tree head" in problems[0]


def test_a_journal_from_before_the_log_is_sealed_in_place_its_chain_kept(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault, 4)
    sql(storage, "DELETE FROM tree_heads")
    sql(storage, "DELETE FROM cursors")
    (vault.root / KEY_FILE).unlink()  # as an older guardmail left it: chain and HEAD only
    chain = [(r.seq, r.hash) for r in vault.stored_rows()]
    problems = [str(p) for p in verify_vault(vault, blobs=False)]
    assert problems == [
        "entry 4: entries 1-4 are covered by no signed tree head (heads deleted, or a journal "
        "from before the log that no daemon has sealed yet)"
    ]
    vault = Vault(vault.root, storage, "jane")  # the first start of the new guardmail
    seal_log(vault, now=NOW)  # what the daemon does at its start (serve_tenant)
    assert [h.tree_size for h in vault.tree_heads()] == [4]
    assert [(r.seq, r.hash) for r in vault.stored_rows()] == chain
    assert verify_vault(vault) == []
    vault.put(b"after", source_ref="new/after", metadata={}, now=NOW)  # continues the tree
    assert [h.tree_size for h in vault.tree_heads()] == [4, 5]
    assert verify_vault(vault) == []


def test_a_damaged_frontier_is_rebuilt_from_the_journal(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault, 3)
    sql(storage, "UPDATE cursors SET value = '3 ' || ? WHERE source = ? AND name = ?",
        ("ab" * 64, CURSOR_SOURCE, FRONTIER))  # fmt: skip
    fill(vault, 1)
    assert verify_vault(vault, blobs=False) == []


def test_entries_cut_after_a_head_are_named(vault: Vault, storage: SQLiteStorage) -> None:
    fill(vault, 4)
    last = vault.stored_rows()[2]
    sql(storage, "DELETE FROM journal WHERE seq = 4")
    (vault.root / HEAD_FILE).write_text(f"3 {last.hash}\n")  # HEAD rewritten to match
    assert [str(p) for p in verify_vault(vault, blobs=False)] == [
        "entry 4: the signed tree head over entries 1-4 (signed 2026-12-02T09:00:00+00:00): "
        "the journal ends at entry 3 (entries cut from the end)"
    ]
    fill(vault, 0)
    vault.seal(now=NOW)  # signs nothing over the cut journal
    assert [h.tree_size for h in vault.tree_heads()] == [1, 2, 3, 4]


def test_a_damaged_key_does_not_stop_archiving_and_is_reported(
    vault: Vault, storage: SQLiteStorage
) -> None:
    fill(vault, 2)
    (vault.root / KEY_FILE).write_bytes(b"not a key\n")
    fresh = Vault(vault.root, storage, "jane")  # a restart: the key is read again
    receipt = fresh.put(b"still archived", source_ref="new/x", metadata={}, now=NOW)
    assert fresh.blobs.get(receipt.sha256) == b"still archived"
    problems = [str(p) for p in verify_vault(fresh, blobs=False)]
    assert f"entry 0: {vault.root / KEY_FILE}: not a tree-head key" in problems[0]
    assert any("entry 3 is covered by no signed tree head" in p for p in problems)
    assert any("journaled without a signed tree head" in p for p in problems)
