"""Property tests of the journal's canonical form (issue 23, "bad input"), on the real SQLite
storage and vault:

- any entry a caller can journal (text of any code point, lone surrogates included: aiosmtpd
  hands over 8-bit envelope bytes as surrogate escapes) is stored, and decodes to what was given
  (a high surrogate directly followed by a low one: to the character the pair means in JSON);
- canonical bytes are stable: the decoded entry re-encodes to the stored body byte for byte,
  key order does not matter, and the same entries give the same bodies and hash chain anywhere;
- any tampering with a stored entry (its body, either hash, an index column, its place, its
  presence) is reported by ``evidence verify`` (``verify_vault``).

Example counts are bounded (a few seconds each); ``GUARDMAIL_PROPERTY_EXAMPLES`` raises them.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.journal import RESERVED, canonical_json, chain_hash, entry
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

NOW = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
TENANT = "jane"
PROPERTY = settings(
    max_examples=int(os.environ.get("GUARDMAIL_PROPERTY_EXAMPLES", "40")),  # SQLite fsyncs
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Every code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
# What an attacker writes into a stored row through SQLite: text SQLite can hold (no surrogates).
stored_text = st.text(st.characters(codec="utf-8"), max_size=20)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        any_text,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=15,
)
fields = st.dictionaries(any_text | st.sampled_from(sorted(RESERVED)), json_values, max_size=6)
records = st.lists(
    st.builds(
        Record,
        kind=st.sampled_from(["action", "warning", "export"]) | st.text(max_size=20),
        fields=fields,
        sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        # Index columns: SQLite takes only text with a UTF-8 form (no surrogates), and no channel
        # makes a reference with one (Maildir names are the delivery agent's, SMTP's the queue's).
        source_ref=st.none() | st.text(max_size=20),
    ),
    min_size=1,
    max_size=5,
)


@contextmanager
def vault() -> Iterator[Vault]:
    with tempfile.TemporaryDirectory(prefix="gm-journal-") as top:
        storage = SQLiteStorage(Path(top) / "state" / "guardmail.db")
        try:
            yield Vault(Path(top) / "state" / "vault" / TENANT, storage, TENANT)
        finally:
            storage.close()


def expected(record: Record, seq: int) -> dict[str, Any]:
    """The entry as journaled, read as JSON reads it (the only change: surrogate pairs joined);
    the names the journal fills itself are its own, whatever ``fields`` held."""
    want = {k: v for k, v in record.fields.items() if k not in RESERVED}
    want.update(seq=seq, tenant=TENANT, kind=record.kind, time=NOW.isoformat())
    if record.sha256 is not None:
        want["sha256"] = record.sha256
    if record.source_ref is not None:
        want["source_ref"] = record.source_ref
    read: dict[str, Any] = json.loads(json.dumps(want))
    return read


@PROPERTY
@given(records=records)
def test_any_entry_is_stored_and_decodes_to_what_was_journaled(records: list[Record]) -> None:
    with vault() as v:
        v.record_many(records, now=NOW)
        stored = v.stored_rows()
        assert [entry(r) for r in stored] == [expected(r, n) for n, r in enumerate(records, 1)]
        assert [r.kind for r in v.rows()] == [r.kind for r in records]
        for row in stored:
            assert canonical_json(entry(row)) == row.body  # decode, encode: the same text
            row.body.encode("utf-8")  # the hashed bytes exist: strict UTF-8
        assert verify_vault(v, blobs=False) == []  # the records' sha256 name no real blob


@PROPERTY
@given(records=records, seed=st.integers())
def test_the_same_entries_give_the_same_bytes_and_hash_chain(
    records: list[Record], seed: int
) -> None:
    shuffled = []
    for r in records:  # the same entries, their keys given in another order
        items = list(r.fields.items())
        random.Random(seed).shuffle(items)
        shuffled.append(Record(kind=r.kind, fields=dict(items), sha256=r.sha256,
                               source_ref=r.source_ref))  # fmt: skip
    with vault() as first, vault() as second:
        first.record_many(records, now=NOW)
        for r in shuffled:
            second.record(r.kind, r.fields, now=NOW, sha256=r.sha256, source_ref=r.source_ref)
        one, two = first.stored_rows(), second.stored_rows()
    assert [(r.body, r.prev_hash, r.hash) for r in one] == [
        (r.body, r.prev_hash, r.hash) for r in two
    ]
    for row in one:
        assert row.hash == chain_hash(row.prev_hash, canonical_json(entry(row)))


# Tampering, as someone with write access to the database would do it.
TAMPERS = (
    "body",  # an edited body, hash left alone
    "body_rehashed",  # an edited body with its own hash recomputed
    "chain_rewritten",  # an edited body and every hash after it recomputed (HEAD left alone)
    "hash",
    "prev_hash",
    "column",  # an index column (kind, sha256, source_ref, scope) changed
    "delete",
    "swap",  # two entries trade places
    "seq",  # an entry renumbered past the end
)


def _edit(text: str, at: int, insert: str, cut: int) -> str:
    at %= len(text) + 1
    return text[:at] + insert + text[at + cut :]


def _tamper(db: Path, how: str, pick: int, other: int, edit: tuple[int, str, int]) -> bool:
    """Apply one tampering; False when the draw changed nothing (the example is skipped)."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            rows = conn.execute(
                "SELECT seq, body, prev_hash, hash, kind, sha256, source_ref, scope "
                "FROM journal WHERE tenant = ? ORDER BY seq",
                (TENANT,),
            ).fetchall()
            i, j = pick % len(rows), other % len(rows)
            seq, body, prev, digest = rows[i][:4]
            if how in {"body", "body_rehashed", "chain_rewritten"}:
                new = _edit(body, *edit)
                if new == body:
                    return False
                conn.execute(
                    "UPDATE journal SET body = ? WHERE tenant = ? AND seq = ?", (new, TENANT, seq)
                )
                if how == "body_rehashed":
                    conn.execute(
                        "UPDATE journal SET hash = ? WHERE tenant = ? AND seq = ?",
                        (chain_hash(prev, new), TENANT, seq),
                    )
                if how == "chain_rewritten":
                    prev_hash = prev
                    for k in range(i, len(rows)):
                        this = new if k == i else rows[k][1]
                        h = chain_hash(prev_hash, this)
                        conn.execute(
                            "UPDATE journal SET prev_hash = ?, hash = ? "
                            "WHERE tenant = ? AND seq = ?",
                            (prev_hash, h, TENANT, rows[k][0]),
                        )
                        prev_hash = h
            elif how in {"hash", "prev_hash"}:
                old = digest if how == "hash" else prev
                new = _edit(old, *edit)
                if new == old:
                    return False
                conn.execute(
                    f"UPDATE journal SET {how} = ? WHERE tenant = ? AND seq = ?",
                    (new, TENANT, seq),
                )
            elif how == "column":
                name = ("kind", "sha256", "source_ref", "scope")[other % 4]
                old = rows[i][4 + other % 4]
                new = _edit(old or "", *edit)
                if new == old or (old is None and name == "scope"):
                    return False  # a scope column absent from the body is not hashed
                conn.execute(
                    f"UPDATE journal SET {name} = ? WHERE tenant = ? AND seq = ?",
                    (new, TENANT, seq),
                )
            elif how == "delete":
                conn.execute("DELETE FROM journal WHERE tenant = ? AND seq = ?", (TENANT, seq))
            elif how == "swap":
                if i == j:
                    return False
                other_seq = rows[j][0]
                conn.execute(
                    "UPDATE journal SET seq = -1 WHERE tenant = ? AND seq = ?", (TENANT, seq)
                )
                conn.execute(
                    "UPDATE journal SET seq = ? WHERE tenant = ? AND seq = ?",
                    (seq, TENANT, other_seq),
                )
                conn.execute(
                    "UPDATE journal SET seq = ? WHERE tenant = ? AND seq = -1",
                    (other_seq, TENANT),
                )
            else:  # renumbered past the end
                conn.execute(
                    "UPDATE journal SET seq = ? WHERE tenant = ? AND seq = ?",
                    (len(rows) + 1 + j, TENANT, seq),
                )
        return True
    finally:
        conn.close()


@PROPERTY
@given(
    records=records,
    archived=st.lists(st.binary(max_size=64), min_size=1, max_size=3),
    how=st.sampled_from(TAMPERS),
    pick=st.integers(0, 100),
    other=st.integers(0, 100),
    edit=st.tuples(st.integers(0, 2000), stored_text, st.integers(0, 3)),
)
def test_any_tampering_with_a_stored_entry_is_reported_by_verify(
    records: list[Record],
    archived: list[bytes],
    how: str,
    pick: int,
    other: int,
    edit: tuple[int, str, int],
) -> None:
    with vault() as v:
        archives = [Archive(raw=raw, source_ref=f"new/{n}") for n, raw in enumerate(archived)]
        v.put_many(archives, now=NOW)
        v.record_many(records, now=NOW)
        assert verify_vault(v, blobs=False) == []
        db = v.root.parents[1] / "guardmail.db"
        if not _tamper(db, how, pick, other, edit):
            return
        problems = verify_vault(v, blobs=False)
    assert problems, f"{how} at {pick} went unnoticed"


# Regression tests for what the properties found.


def test_a_lone_surrogate_in_an_entry_is_journaled_escaped_and_verifies() -> None:
    """It used to raise UnicodeEncodeError while hashing (an 8-bit SMTP envelope byte)."""
    with vault() as v:
        row = v.record("action", {"meta": {"mail_from": "ex\udcff@bad.example"}}, now=NOW)
        assert '"ex\\udcff@bad.example"' in row.body
        assert entry(row)["meta"]["mail_from"] == "ex\udcff@bad.example"
        assert verify_vault(v, blobs=False) == []


def test_fields_named_like_the_index_columns_cannot_make_them_disagree() -> None:
    """A ``sha256`` key in the fields with no sha256 argument used to reach the hashed body while
    the column stayed empty, and verify called the untouched vault tampered with."""
    with vault() as v:
        row = v.record("action", {"sha256": "0" * 64, "seq": 99, "note": "x"}, now=NOW)
        assert entry(row) == {
            "kind": "action", "note": "x", "seq": 1, "tenant": TENANT, "time": NOW.isoformat()
        }  # fmt: skip
        assert verify_vault(v, blobs=False) == []
