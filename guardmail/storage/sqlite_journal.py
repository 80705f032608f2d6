"""SQLite queries of the hash-chained journal, its signed tree heads and their RFC 3161
timestamps (tables in ``guardmail.storage.sqlite_schema``), mixed into ``SQLiteTransaction``.

A row read back is checked field by field: a file edited by hand is a StateError, not a crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from guardmail.errors import StateError
from guardmail.storage.base import JournalRow, TimestampRow, TreeHeadRow

_COLUMNS = "tenant, seq, kind, body, prev_hash, hash, sha256, source_ref, scope"

_Row = tuple[str, int, str, str, str, str, str | None, str | None, str | None]


# Rows (or keys) a statement of ``journal_insert_many`` (``find_archived_many``) carries: 9
# (2) parameters each, within SQLite's oldest default limit of 999 parameters a statement.
INSERT_CHUNK = 100
FIND_CHUNK = 400

_OPT = (str, type(None))
_ROW_TYPES: tuple[type | tuple[type, ...], ...] = (str, int, str, str, str, str, _OPT, _OPT, _OPT)


def _row(r: _Row, path: Path) -> JournalRow:
    for name, value, want in zip(_COLUMNS.split(", "), r, _ROW_TYPES, strict=True):
        if not isinstance(value, want) or isinstance(value, bool):
            raise StateError(
                f"{path}: journal entry {r[1]!r} of tenant {r[0]!r} has {name} {value!r}, "
                f"not {'an integer' if want is int else 'text'} (the file was edited)"
            )
    return JournalRow(
        tenant=r[0],
        seq=r[1],
        kind=r[2],
        body=r[3],
        prev_hash=r[4],
        hash=r[5],
        sha256=r[6],
        source_ref=r[7],
        scope=r[8],
    )


_HEAD_COLUMNS = "tree_size, root_hash, time, signature"


def _head(tenant: str, r: tuple[object, ...], path: Path) -> TreeHeadRow:
    size, root, time, signature = r
    if not isinstance(size, int) or not all(isinstance(v, str) for v in (root, time, signature)):
        raise StateError(
            f"{path}: a tree head of tenant {tenant!r} has a field of the wrong type "
            f"({r!r}): the file was edited"
        )
    return TreeHeadRow(
        tenant=tenant, tree_size=size, root_hash=str(root), time=str(time), signature=str(signature)
    )


class JournalSQL:
    """The methods of ``SQLiteTransaction`` over the journal, tree heads and timestamps."""

    _conn: sqlite3.Connection
    _path: Path

    def journal_head(self, tenant: str) -> JournalRow | None:
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? ORDER BY seq DESC LIMIT 1", (tenant,)
        )
        r = cur.fetchone()
        return _row(r, self._path) if r else None

    def journal_insert(self, row: JournalRow) -> None:
        self._conn.execute(
            f"INSERT INTO journal ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.tenant,
                row.seq,
                row.kind,
                row.body,
                row.prev_hash,
                row.hash,
                row.sha256,
                row.source_ref,
                row.scope,
            ),
        )

    def journal_insert_many(self, rows: Sequence[JournalRow]) -> None:
        # One multi-row INSERT per chunk, not executemany: sqlite3 gives up the GIL around every
        # sqlite3_step, i.e. per row, and the vault's committer thread then waits up to a switch
        # interval for the busy event loop to hand it back, per row (issue 28).
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            self._conn.execute(
                f"INSERT INTO journal ({_COLUMNS}) VALUES {values}",
                [
                    v
                    for r in chunk
                    for v in (
                        r.tenant,
                        r.seq,
                        r.kind,
                        r.body,
                        r.prev_hash,
                        r.hash,
                        r.sha256,
                        r.source_ref,
                        r.scope,
                    )
                ],
            )

    def journal_rows(
        self, tenant: str, *, kind: str | None = None, after_seq: int = 0
    ) -> Iterator[JournalRow]:
        if kind is None:
            cur = self._conn.execute(
                f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND seq > ? ORDER BY seq",
                (tenant, after_seq),
            )
        else:
            cur = self._conn.execute(
                f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND seq > ? AND kind = ? "
                "ORDER BY seq",
                (tenant, after_seq, kind),
            )
        for r in cur:
            yield _row(r, self._path)

    def journal_row(self, tenant: str, seq: int) -> JournalRow | None:
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND seq = ?", (tenant, seq)
        )
        r = cur.fetchone()
        return _row(r, self._path) if r else None

    def tree_head_last(self, tenant: str) -> TreeHeadRow | None:
        r = self._conn.execute(
            f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tenant = ? "
            "ORDER BY tree_size DESC LIMIT 1",
            (tenant,),
        ).fetchone()
        return _head(tenant, r, self._path) if r else None

    def tree_head_insert(self, row: TreeHeadRow) -> None:
        self._conn.execute(
            f"INSERT INTO tree_heads (tenant, {_HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (row.tenant, row.tree_size, row.root_hash, row.time, row.signature),
        )

    def tree_heads(self, tenant: str) -> Iterator[TreeHeadRow]:
        cur = self._conn.execute(
            f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tenant = ? ORDER BY tree_size",
            (tenant,),
        )
        for r in cur:
            yield _head(tenant, r, self._path)

    def timestamp_insert(self, row: TimestampRow) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO tree_head_timestamps "
            "(tenant, tree_size, token, gen_time, tsa_url, ca_pem) VALUES (?, ?, ?, ?, ?, ?)",
            (row.tenant, row.tree_size, row.token, row.gen_time, row.tsa_url, row.ca_pem),
        )

    def timestamps(self, tenant: str) -> Iterator[TimestampRow]:
        yield from self._timestamps(tenant, "ORDER BY tree_size")

    def timestamp_last(self, tenant: str) -> TimestampRow | None:
        return next(self._timestamps(tenant, "ORDER BY tree_size DESC LIMIT 1"), None)

    def _timestamps(self, tenant: str, order: str) -> Iterator[TimestampRow]:
        cur = self._conn.execute(
            "SELECT tree_size, token, gen_time, tsa_url, ca_pem FROM tree_head_timestamps "
            f"WHERE tenant = ? {order}",
            (tenant,),
        )
        for size, token, gen_time, url, ca in cur:
            if not isinstance(size, int) or not isinstance(token, bytes):
                raise StateError(
                    f"{self._path}: a timestamp token of tenant {tenant!r} has a field of the "
                    "wrong type: the file was edited"
                )
            yield TimestampRow(
                tenant=tenant,
                tree_size=size,
                token=token,
                gen_time=str(gen_time),
                tsa_url=str(url),
                ca_pem=str(ca),
            )

    def find_archived(self, tenant: str, sha256: str, scope: str) -> JournalRow | None:
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND sha256 = ? AND scope = ? "
            "AND kind = 'archived' ORDER BY +seq LIMIT 1",  # +seq: use the partial index
            (tenant, sha256, scope),
        )
        r = cur.fetchone()
        return _row(r, self._path) if r else None

    def find_archived_many(
        self, tenant: str, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], JournalRow]:
        # One statement per chunk of keys (see journal_insert_many); it steps once per entry
        # found (a retry's duplicates) and once more, not once per key.
        found: dict[tuple[str, str], JournalRow] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), FIND_CHUNK):
            chunk = wanted[start : start + FIND_CHUNK]
            values = ", ".join(["(?, ?)"] * len(chunk))
            cur = self._conn.execute(
                f"WITH k (sha256, scope) AS (VALUES {values}) "
                f"SELECT {', '.join('j.' + c for c in _COLUMNS.split(', '))} "
                "FROM k JOIN journal AS j ON j.tenant = ? AND j.sha256 = k.sha256 "
                "AND j.scope = k.scope AND j.kind = 'archived'",
                [*(v for key in chunk for v in key), tenant],
            )
            for r in cur.fetchall():
                row = _row(r, self._path)
                key = (str(row.sha256), str(row.scope))
                if key not in found or row.seq < found[key].seq:
                    found[key] = row
        return found

    def find_archived_ref(self, tenant: str, source_ref: str) -> JournalRow | None:
        cur = self._conn.execute(
            # "+seq": order after the lookup, so that the (tenant, source_ref) index is used
            # rather than a walk of the tenant's whole journal in seq order.
            f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND source_ref = ? "
            "AND kind = 'archived' ORDER BY +seq LIMIT 1",
            (tenant, source_ref),
        )
        r = cur.fetchone()
        return _row(r, self._path) if r else None

    def find_actions(self, tenant: str, sha256: str) -> list[JournalRow]:
        cur = self._conn.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE tenant = ? AND sha256 = ? "
            "AND kind = 'action' ORDER BY +seq",  # +seq: use the partial index
            (tenant, sha256),
        )
        return [_row(r, self._path) for r in cur]

    def tenants(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT tenant FROM journal ORDER BY 1")]
