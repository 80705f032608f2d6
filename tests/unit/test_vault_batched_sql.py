"""A vault group's journal entries go to SQLite in a few statements, not three an entry (issue
28: each statement gives up the GIL beside the busy event loop), and come back exactly."""

from datetime import UTC, datetime
from pathlib import Path

from guardmail.storage.base import JournalRow
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.storage.sqlite_journal import FIND_CHUNK, INSERT_CHUNK
from guardmail.vault.journal import check_chain
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def rows(n: int, tenant: str = "t") -> list[JournalRow]:
    tricky = ["plain", "é 漢字 \U0001f600", "quote ' \" back\\slash", "nul \x00 and\nnewline"]
    return [
        JournalRow(
            tenant=tenant,
            seq=i + 1,
            kind="archived" if i % 3 else "action",
            body=f'{{"n":{i},"text":"{tricky[i % 4]}"}}',
            prev_hash=f"p{i}",
            hash=f"h{i}",
            sha256=f"{i:064x}" if i % 5 else None,
            source_ref=f"ref/{i}/{tricky[i % 4]}",
            scope=None if i % 7 == 0 else f"scope/{i % 11}",
        )
        for i in range(n)
    ]


def test_insert_many_stores_every_row_exactly_across_chunks(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    want = rows(2 * INSERT_CHUNK + 7)
    with storage.transaction() as tx:
        tx.journal_insert_many(want)
    with storage.read() as tx:
        assert list(tx.journal_rows("t")) == want


def test_find_archived_many_finds_the_first_archived_entry_of_each_key(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    sha = "a" * 64

    def row(seq: int, kind: str, scope: str, tenant: str = "t") -> JournalRow:
        return JournalRow(
            tenant=tenant,
            seq=seq,
            kind=kind,
            body="{}",
            prev_hash="",
            hash=str(seq),
            sha256=sha,
            source_ref="r",
            scope=scope,
        )

    stored = [
        row(1, "action", "s1"),
        row(2, "archived", "s1"),
        row(3, "archived", "s1"),
        row(4, "archived", "s2"),
        row(1, "archived", "s3", tenant="other"),
    ]
    # Far more keys than one statement carries, nearly all of them absent.
    keys = [(f"{i:064x}", "s1") for i in range(FIND_CHUNK + 50)]
    keys += [(sha, "s1"), (sha, "s2"), (sha, "s3"), (sha, "s1")]
    with storage.transaction() as tx:
        tx.journal_insert_many(stored)
        found = tx.find_archived_many("t", keys)
    assert {k: r.seq for k, r in found.items()} == {(sha, "s1"): 2, (sha, "s2"): 4}


def test_a_group_of_many_entries_costs_a_bounded_number_of_statements(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    vault = Vault(tmp_path / "v", storage, "jane")
    vault.put_many([Archive(raw=b"first", source_ref="uid/first")], now=NOW)  # key, HEAD made
    statements: list[str] = []
    storage._conn.set_trace_callback(statements.append)
    archives = [Archive(raw=f"message {i}\r\n".encode(), source_ref=f"uid/{i}") for i in range(300)]
    again = Archive(raw=b"first", source_ref="uid/first")  # an earlier group's item: duplicate
    twice = Archive(raw=b"message 7\r\n", source_ref="uid/7")  # this group's, again
    done = vault.commit(
        [*archives, again, twice, Record(kind="action", fields={"to": "q"}, of=archives[0])],
        now=NOW,
        witness=True,
    )
    storage._conn.set_trace_callback(None)
    # One statement an entry would be 300+; this group's are a handful, whatever its size.
    assert len(statements) < 20, statements
    seqs = [getattr(d, "seq", None) for d in done]
    assert seqs[:300] == list(range(2, 302))
    assert seqs[300:] == [1, 9, 302]  # the duplicates name their first entries
    assert check_chain(vault.rows()) == []
    assert verify_vault(vault) == []
