"""SQLite backend of the storage seam: WAL, synchronous=FULL, one writer at a time.

A committed transaction is on disk (fsync'd) when ``transaction()`` returns; with
``synchronous="NORMAL"`` (only the after-queue filter's relayed copies ask for it, see
``channels/smtp/relayed.py``) it is in the write-ahead log, in the kernel's page cache: it
survives the process being killed, not a power loss, and commits need no fsync (checkpoints
still do).

``BEGIN IMMEDIATE`` takes the write lock at the start, so reading the journal head and
appending after it cannot interleave with another process doing the same: the hash chain never
forks.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from guardmail.errors import StateError
from guardmail.storage.base import (
    AliasFeaturesRow,
    Checkpoint,
    OffenderIdRow,
    StorageClosed,
    StorageUnavailable,
    WarningRow,
)
from guardmail.storage.files import private_dir
from guardmail.storage.sqlite_journal import JournalSQL
from guardmail.storage.sqlite_receipts import SCHEMA as RECEIPTS_SCHEMA
from guardmail.storage.sqlite_receipts import ReceiptsSQL
from guardmail.storage.sqlite_schema import SCHEMA, TIMESTAMP_SCHEMA

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


class SQLiteTransaction(JournalSQL, ReceiptsSQL):
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

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

    def all_relayed(self, tenant: str) -> list[tuple[str, str, str, str]]:
        rows = self._conn.execute(
            "SELECT queue_id, sha256, copy, at FROM relayed WHERE tenant = ? ORDER BY at",
            (tenant,),
        )
        return [(str(q), str(s), str(c), str(a)) for q, s, c, a in rows]


class SQLiteStorage:
    """Storage in one SQLite file. Safe to share between threads; one transaction at a time."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_ms: int = 10_000,
        autocheckpoint: bool = True,
    ) -> None:
        """Open (creating, 0600, in a 0700 directory) the database. StateError if ``path`` is
        not an SQLite database; PermissionError or StateError if this user may not use it.

        ``synchronous``: FULL (the default) fsyncs every commit; NORMAL (WAL) does not, so a
        power loss may lose the last commits, a killed process none. ``busy_timeout_ms``: how
        long a statement waits for another connection's lock before StorageUnavailable (0: at
        once, for a read that must not block its caller). ``autocheckpoint=False``: this
        connection's commits never checkpoint the log (a checkpoint fsyncs; another connection's
        ``checkpoint`` does it), for commits made where an fsync must not run."""
        private_dir(path.parent)
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        # Reads have a connection (and a lock) of their own, opened at the first read: in WAL
        # a reader needs no lock of the writer's, so it must not queue behind a transaction
        # and its fsync on the writer's connection either (a milter's look-up for a retried
        # message waited ~20-60 ms there behind other tenants' commits, issue 27).
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._busy_ms = int(busy_timeout_ms)
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
            self._conn.execute("PRAGMA busy_timeout = 10000")  # opening may wait for a writer
            self._conn.execute("PRAGMA journal_mode = WAL")
            sync = "NORMAL" if synchronous == "NORMAL" else "FULL"
            self._conn.execute(f"PRAGMA synchronous = {sync}")
            self._conn.executescript(SCHEMA)
            self._conn.executescript(TIMESTAMP_SCHEMA)
            self._conn.executescript(RECEIPTS_SCHEMA)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not autocheckpoint:
                self._conn.execute("PRAGMA wal_autocheckpoint = 0")
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
        with self._lock:
            if self._closed:  # else sqlite3.ProgrammingError, which no caller expects
                raise StorageClosed(f"{self.path} is closed (the daemon is stopping)")
            with self._session(self._conn, "BEGIN IMMEDIATE") as tx:
                yield tx

    @contextmanager
    def read(self) -> Iterator[SQLiteTransaction]:
        """A read-only snapshot (deferred ``BEGIN`` on a ``query_only`` connection of its own):
        it takes no write lock and waits for no write transaction of this storage, and it sees
        every transaction committed before it began (WAL). One read at a time."""
        with self._read_lock:
            if self._closed:
                raise StorageClosed(f"{self.path} is closed (the daemon is stopping)")
            if self._reader is None:
                self._reader = self._open_reader()
            with self._session(self._reader, "BEGIN") as tx:
                yield tx

    def _open_reader(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open {self.path} to read: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageUnavailable(f"cannot open {self.path} to read: {exc}") from exc
        return conn

    @contextmanager
    def _session(self, conn: sqlite3.Connection, begin: str) -> Iterator[SQLiteTransaction]:
        """A transaction on ``conn`` (its lock held by the caller)."""
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageUnavailable(f"cannot start a transaction on {self.path}: {exc}") from exc
        try:
            yield SQLiteTransaction(conn, self.path)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and not isinstance(
                exc, sqlite3.IntegrityError
            ):
                raise StorageUnavailable(f"transaction on {self.path} failed: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.IntegrityError
            ):
                raise StateError(f"{self.path}: the database is damaged ({exc})") from None
            raise

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database (PASSIVE: waits for no reader or writer),
        so that the log stays small when the connections writing it do not (``autocheckpoint``)."""
        with self._lock:
            if self._closed:
                raise StorageClosed(f"{self.path} is closed (the daemon is stopping)")
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"cannot checkpoint {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._closed = True
            self._conn.close()
            if self._reader is not None:
                self._reader.close()
