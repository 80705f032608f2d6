"""SQLite backend of the storage seam: WAL, synchronous=FULL, one writer at a time.

A committed transaction is on disk (fsync'd) when ``transaction()`` returns. ``BEGIN IMMEDIATE``
takes the write lock at the start, so reading the journal head and appending after it cannot
interleave with another process doing the same: the hash chain never forks.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from guardmail.errors import StateError
from guardmail.storage.base import (
    AliasFeaturesRow,
    Checkpoint,
    JournalRow,
    OffenderIdRow,
    StorageUnavailable,
    TimestampRow,
    TreeHeadRow,
    WarningRow,
)
from guardmail.storage.files import private_dir
from guardmail.storage.sqlite_receipts import SCHEMA as RECEIPTS_SCHEMA
from guardmail.storage.sqlite_receipts import ReceiptsSQL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    tenant     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    sha256     TEXT,
    source_ref TEXT,
    scope      TEXT,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX IF NOT EXISTS journal_archived
    ON journal (tenant, sha256, scope) WHERE kind = 'archived';
CREATE TABLE IF NOT EXISTS warnings (
    tenant      TEXT    NOT NULL,
    offender    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    PRIMARY KEY (tenant, offender)
);
CREATE INDEX IF NOT EXISTS journal_archived_ref
    ON journal (tenant, source_ref) WHERE kind = 'archived';
CREATE TABLE IF NOT EXISTS cursors (
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, source, name)
);
CREATE TABLE IF NOT EXISTS offender_ids (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    identities TEXT NOT NULL,
    first_name TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS relayed (
    tenant   TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    copy     TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (tenant, queue_id, sha256, copy)
);
CREATE INDEX IF NOT EXISTS relayed_at ON relayed (tenant, at);
CREATE INDEX IF NOT EXISTS journal_action
    ON journal (tenant, sha256) WHERE kind = 'action';
CREATE TABLE IF NOT EXISTS tree_heads (
    tenant    TEXT    NOT NULL,
    tree_size INTEGER NOT NULL,
    root_hash TEXT    NOT NULL,
    time      TEXT    NOT NULL,
    signature TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
CREATE TABLE IF NOT EXISTS alias_features (
    tenant   TEXT NOT NULL,
    offender TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    features TEXT NOT NULL,
    PRIMARY KEY (tenant, offender, sha256)
);
CREATE TABLE IF NOT EXISTS not_aliases (
    tenant   TEXT NOT NULL,
    address  TEXT NOT NULL,
    offender TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (tenant, address, offender)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    PRIMARY KEY (tenant, source, folder)
);
"""

# Its own statement, so that it reads as the migration that added it: RFC 3161 tokens over
# signed tree heads (guardmail.vault.timestamps).
_TIMESTAMP_SCHEMA = """
CREATE TABLE IF NOT EXISTS tree_head_timestamps (
    tenant    TEXT    NOT NULL,
    tree_size INTEGER NOT NULL,
    token     BLOB    NOT NULL,
    gen_time  TEXT    NOT NULL,
    tsa_url   TEXT    NOT NULL,
    ca_pem    TEXT    NOT NULL,
    PRIMARY KEY (tenant, tree_size)
);
"""

_COLUMNS = "tenant, seq, kind, body, prev_hash, hash, sha256, source_ref, scope"

_WARNING_FIELDS = (
    "tenant",
    "offender",
    "state",
    "recipient",
    "message_id",
    "sha256",
    "started_at",
    "finished_at",
    "detail",
    "attempts",
)
_WARNING_COLUMNS = ", ".join(_WARNING_FIELDS)

_Row = tuple[str, int, str, str, str, str, str | None, str | None, str | None]


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


class SQLiteTransaction(ReceiptsSQL):
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

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

    def checkpoint(self, tenant: str, source: str, folder: str) -> Checkpoint | None:
        r = self._conn.execute(
            "SELECT uidvalidity, last_uid FROM checkpoints "
            "WHERE tenant = ? AND source = ? AND folder = ?",
            (tenant, source, folder),
        ).fetchone()
        return Checkpoint(uidvalidity=r[0], last_uid=r[1]) if r else None

    def warning(self, tenant: str, offender: str) -> WarningRow | None:
        r = self._conn.execute(
            f"SELECT {_WARNING_COLUMNS} FROM warnings WHERE tenant = ? AND offender = ?",
            (tenant, offender),
        ).fetchone()
        return WarningRow(**dict(zip(_WARNING_FIELDS, r, strict=True))) if r else None

    def warnings(self, tenant: str) -> list[WarningRow]:
        rows = self._conn.execute(
            f"SELECT {_WARNING_COLUMNS} FROM warnings WHERE tenant = ? ORDER BY offender",
            (tenant,),
        )
        return [WarningRow(**dict(zip(_WARNING_FIELDS, r, strict=True))) for r in rows]

    def put_warning(self, row: WarningRow) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO warnings ({_WARNING_COLUMNS}) "
            f"VALUES ({', '.join('?' * len(_WARNING_FIELDS))})",
            tuple(getattr(row, f) for f in _WARNING_FIELDS),
        )

    def delete_warning(self, tenant: str, offender: str) -> None:
        self._conn.execute(
            "DELETE FROM warnings WHERE tenant = ? AND offender = ?", (tenant, offender)
        )

    def offender_ids(self, tenant: str) -> list[OffenderIdRow]:
        rows = self._conn.execute(
            "SELECT id, name, identities, first_name, first_seen FROM offender_ids "
            "WHERE tenant = ? ORDER BY first_seen, id",
            (tenant,),
        )
        return [
            OffenderIdRow(
                tenant=tenant, id=r[0], name=r[1], identities=r[2], first_name=r[3], first_seen=r[4]
            )
            for r in rows
        ]

    def put_offender_id(self, row: OffenderIdRow) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO offender_ids "
            "(tenant, id, name, identities, first_name, first_seen) VALUES (?, ?, ?, ?, ?, ?)",
            (row.tenant, row.id, row.name, row.identities, row.first_name, row.first_seen),
        )

    def set_checkpoint(self, tenant: str, source: str, folder: str, point: Checkpoint) -> None:
        self._conn.execute(
            "INSERT INTO checkpoints (tenant, source, folder, uidvalidity, last_uid) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, source, folder) "
            "DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid",
            (tenant, source, folder, point.uidvalidity, point.last_uid),
        )

    def cursor(self, tenant: str, source: str, name: str) -> str | None:
        r = self._conn.execute(
            "SELECT value FROM cursors WHERE tenant = ? AND source = ? AND name = ?",
            (tenant, source, name),
        ).fetchone()
        return str(r[0]) if r else None

    def set_cursor(self, tenant: str, source: str, name: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO cursors (tenant, source, name, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant, source, name) DO UPDATE SET value = excluded.value",
            (tenant, source, name, value),
        )

    def put_alias_features(self, row: AliasFeaturesRow) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO alias_features (tenant, offender, sha256, seen_at, features) "
            "VALUES (?, ?, ?, ?, ?)",
            (row.tenant, row.offender, row.sha256, row.seen_at, row.features),
        )

    def alias_features(self, tenant: str) -> list[AliasFeaturesRow]:
        rows = self._conn.execute(
            "SELECT offender, sha256, seen_at, features FROM alias_features WHERE tenant = ? "
            "ORDER BY seen_at, rowid",
            (tenant,),
        )
        return [
            AliasFeaturesRow(
                tenant=tenant,
                offender=str(r[0]),
                sha256=str(r[1]),
                seen_at=str(r[2]),
                features=str(r[3]),
            )
            for r in rows
        ]

    def put_not_alias(self, tenant: str, offender: str, address: str, at: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO not_aliases (tenant, address, offender, at) "
            "VALUES (?, ?, ?, ?)",
            (tenant, address, offender, at),
        )

    def not_alias_of(self, tenant: str, address: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT offender FROM not_aliases WHERE tenant = ? AND address = ? ORDER BY offender",
            (tenant, address),
        )
        return [str(r[0]) for r in rows]

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

    def relayed(self, tenant: str, queue_id: str, sha256: str) -> set[str]:
        cur = self._conn.execute(
            "SELECT copy FROM relayed WHERE tenant = ? AND queue_id = ? AND sha256 = ?",
            (tenant, queue_id, sha256),
        )
        return {str(r[0]) for r in cur}

    def add_relayed(
        self, tenant: str, queue_id: str, sha256: str, copies: Collection[str], at: str
    ) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO relayed (tenant, queue_id, sha256, copy, at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(tenant, queue_id, sha256, copy, at) for copy in copies],
        )

    def forget_relayed(self, tenant: str, before: str) -> int:
        cur = self._conn.execute(
            "DELETE FROM relayed WHERE tenant = ? AND at < ?", (tenant, before)
        )
        return cur.rowcount

    def tenants(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT tenant FROM journal ORDER BY 1")]


class SQLiteStorage:
    """Storage in one SQLite file. Safe to share between threads; one transaction at a time."""

    def __init__(self, path: Path) -> None:
        """Open (creating, 0600, in a 0700 directory) the database. StateError if ``path`` is
        not an SQLite database; PermissionError or StateError if this user may not use it."""
        private_dir(path.parent)
        self.path = path
        self._lock = threading.Lock()
        # Created 0600 before SQLite opens it (SQLite gives its -wal and -shm files this mode).
        # Only when missing: closing any descriptor of a database file drops every POSIX lock
        # this process holds on it, including those of its other SQLite connections (a tenant
        # opened on reload beside the others), and the database is then corrupted.
        if not path.exists():
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass  # another process made it meanwhile
        for own in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if own.is_file() and stat.S_IMODE(own.stat().st_mode) != 0o600:
                own.chmod(0o600)  # made by an older guardmail, or under another umask
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the database: {exc}") from None
        try:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
            self._conn.executescript(_TIMESTAMP_SCHEMA)
            self._conn.executescript(RECEIPTS_SCHEMA)
        except sqlite3.OperationalError as exc:
            self._conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StorageUnavailable(f"cannot open {path}: {exc}") from exc
            raise StateError(f"{path}: cannot use the database: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StateError(f"{path}: not a guardmail SQLite database ({exc})") from None

    @contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        """A write transaction (``BEGIN IMMEDIATE``: the write lock from its start)."""
        with self._session("BEGIN IMMEDIATE", read_only=False) as tx:
            yield tx

    @contextmanager
    def read(self) -> Iterator[SQLiteTransaction]:
        """A read-only snapshot (deferred ``BEGIN``, ``query_only``): no write lock is taken,
        so a reader never holds up the daemon's writers (WAL)."""
        with self._session("BEGIN", read_only=True) as tx:
            yield tx

    @contextmanager
    def _session(self, begin: str, *, read_only: bool) -> Iterator[SQLiteTransaction]:
        with self._lock:
            try:
                self._conn.execute(begin)
                if read_only:
                    self._conn.execute("PRAGMA query_only = ON")
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StorageUnavailable(
                    f"cannot start a transaction on {self.path}: {exc}"
                ) from exc
            try:
                yield SQLiteTransaction(self._conn, self.path)
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and not isinstance(
                    exc, sqlite3.IntegrityError
                ):
                    raise StorageUnavailable(f"transaction on {self.path} failed: {exc}") from exc
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                    exc, sqlite3.IntegrityError
                ):
                    raise StateError(f"{self.path}: the database is damaged ({exc})") from None
                raise
            finally:
                if read_only:
                    self._conn.execute("PRAGMA query_only = OFF")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
