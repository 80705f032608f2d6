"""SQLite tables of what was checked of an item's authenticity at receipt (DKIM, ARC, the trusted
Authentication-Results) and the DKIM key records fetched then (guardmail.vault.dkimcheck).

Their own tables, created if missing when the database opens (``SCHEMA``), as every table of
``guardmail.storage.sqlite_schema``: an older database gains them at its first open, nothing
else moves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from guardmail.errors import StateError
from guardmail.storage.base import DkimKeyRow, DkimResultRow, ReceiptCheckRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipt_checks (
    tenant       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    checked_at   TEXT    NOT NULL,
    resolver     TEXT    NOT NULL,
    arc_result   TEXT    NOT NULL,
    arc_reason   TEXT    NOT NULL,
    authserv_id  TEXT    NOT NULL,
    auth_results TEXT    NOT NULL,
    note         TEXT    NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE IF NOT EXISTS dkim_results (
    tenant     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    domain     TEXT    NOT NULL,
    selector   TEXT    NOT NULL,
    algorithm  TEXT    NOT NULL,
    result     TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    key_sha256 TEXT,
    PRIMARY KEY (tenant, seq, idx)
);
CREATE TABLE IF NOT EXISTS dkim_keys (
    tenant        TEXT NOT NULL,
    selector      TEXT NOT NULL,
    domain        TEXT NOT NULL,
    record_sha256 TEXT NOT NULL,
    record        BLOB NOT NULL,
    fetched_at    TEXT NOT NULL,
    resolver      TEXT NOT NULL,
    PRIMARY KEY (tenant, selector, domain, record_sha256)
);
CREATE INDEX IF NOT EXISTS dkim_keys_sha ON dkim_keys (tenant, record_sha256);
"""

_CHECK = (
    "seq, sha256, checked_at, resolver, arc_result, arc_reason, authserv_id, auth_results, note"
)
_RESULT = "seq, idx, kind, domain, selector, algorithm, result, reason, key_sha256"
_KEY = "selector, domain, record_sha256, record, fetched_at, resolver"


def _text(value: object, what: str, path: Path) -> str:
    if not isinstance(value, str):
        raise StateError(f"{path}: {what} is {value!r}, not text (the file was edited)")
    return value


class ReceiptsSQL:
    """The methods of ``SQLiteTransaction`` over these tables (mixed into it)."""

    _conn: sqlite3.Connection
    _path: Path

    def unchecked_archives(self, tenant: str, *, channel: str, limit: int) -> list[tuple[int, str]]:
        rows = self._conn.execute(
            "SELECT j.seq, j.sha256 FROM journal j WHERE j.tenant = ? AND j.kind = 'archived' "
            "AND j.sha256 IS NOT NULL AND json_extract(j.body, '$.channel') = ? "
            "AND NOT EXISTS (SELECT 1 FROM receipt_checks r WHERE r.tenant = j.tenant "
            "AND r.seq = j.seq) ORDER BY j.seq LIMIT ?",
            (tenant, channel, limit),
        ).fetchall()
        return [(int(seq), _text(sha, "a journal entry's sha256", self._path)) for seq, sha in rows]

    def put_receipt_check(
        self, check: ReceiptCheckRow, results: Sequence[DkimResultRow], keys: Sequence[DkimKeyRow]
    ) -> None:
        for k in keys:
            self._conn.execute(
                f"INSERT OR IGNORE INTO dkim_keys (tenant, {_KEY}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (k.tenant, k.selector, k.domain, k.record_sha256, k.record, k.fetched_at)
                + (k.resolver,),
            )
        self._conn.execute(
            "DELETE FROM dkim_results WHERE tenant = ? AND seq = ?", (check.tenant, check.seq)
        )
        self._conn.execute(
            f"INSERT OR REPLACE INTO receipt_checks (tenant, {_CHECK}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                check.tenant,
                check.seq,
                check.sha256,
                check.checked_at,
                check.resolver,
                check.arc_result,
                check.arc_reason,
                check.authserv_id,
                check.auth_results,
                check.note,
            ),
        )
        self._conn.executemany(
            f"INSERT INTO dkim_results (tenant, {_RESULT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.tenant,
                    r.seq,
                    r.idx,
                    r.kind,
                    r.domain,
                    r.selector,
                    r.algorithm,
                    r.result,
                    r.reason,
                    r.key_sha256,
                )
                for r in results
            ],
        )

    def receipt_check(self, tenant: str, seq: int) -> ReceiptCheckRow | None:
        r = self._conn.execute(
            f"SELECT {_CHECK} FROM receipt_checks WHERE tenant = ? AND seq = ?", (tenant, seq)
        ).fetchone()
        if r is None:
            return None
        t = [_text(v, f"the receipt check of entry {seq}", self._path) for v in r[1:]]
        return ReceiptCheckRow(
            tenant=tenant,
            seq=int(r[0]),
            sha256=t[0],
            checked_at=t[1],
            resolver=t[2],
            arc_result=t[3],
            arc_reason=t[4],
            authserv_id=t[5],
            auth_results=t[6],
            note=t[7],
        )

    def dkim_results(self, tenant: str, seq: int) -> list[DkimResultRow]:
        rows = self._conn.execute(
            f"SELECT {_RESULT} FROM dkim_results WHERE tenant = ? AND seq = ? ORDER BY idx",
            (tenant, seq),
        )
        out: list[DkimResultRow] = []
        for r in rows:
            what = f"a DKIM result of entry {seq}"
            t = [_text(v, what, self._path) for v in r[2:8]]
            key = r[8]
            out.append(
                DkimResultRow(
                    tenant=tenant,
                    seq=int(r[0]),
                    idx=int(r[1]),
                    kind=t[0],
                    domain=t[1],
                    selector=t[2],
                    algorithm=t[3],
                    result=t[4],
                    reason=t[5],
                    key_sha256=None if key is None else _text(key, what, self._path),
                )
            )
        return out

    def dkim_key(self, tenant: str, record_sha256: str) -> DkimKeyRow | None:
        r = self._conn.execute(
            f"SELECT {_KEY} FROM dkim_keys WHERE tenant = ? AND record_sha256 = ? "
            "ORDER BY fetched_at LIMIT 1",
            (tenant, record_sha256),
        ).fetchone()
        if r is None:
            return None
        record = r[3]
        if not isinstance(record, bytes):
            raise StateError(f"{self._path}: DKIM key {record_sha256} is not stored as bytes")
        what = f"DKIM key {record_sha256}"
        t = [_text(v, what, self._path) for v in (r[0], r[1], r[2], r[4], r[5])]
        return DkimKeyRow(
            tenant=tenant,
            selector=t[0],
            domain=t[1],
            record_sha256=t[2],
            record=record,
            fetched_at=t[3],
            resolver=t[4],
        )
