"""Reader of Gajim's chat history database (``logs.db``; Gajim 1.x, archive schema 7).

Gajim keeps no stanza as received: a row of its ``logs`` table holds the message text, who and
when, as Gajim stored them. What is archived is that row, every column of it, as canonical JSON
(keys sorted, UTF-8) with the conversation's JID and the account's: those bytes are the evidence,
and their SHA-256 proves they are unchanged since the import; the metadata says they are a
Gajim log row, not a stanza.

Which rows: messages only (chat and single messages, received and sent, and group chat
messages); presence and status rows, errors and file transfers are left out. A row is judged by
the conversation's peer: for a chat, its JID (both sides of a conversation with an offender are
imported: the person's own messages show whether there was a back-and-forth); for a group chat,
the occupant's real JID where the room revealed it, and its nick.

Bounds: the database is opened read-only (``mode=ro``, never written, never locked against
Gajim); a row whose text or extra data is longer than the bound is reported as too large
without being loaded (its SHA-256 is then that of its size-bounded key, and it is not archived).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from guardmail.core.item import Channel, Identity, Summary
from guardmail.imports import MAX_ITEM_BYTES, Found, UnreadableSource

# KindConstant of gajim/common/const.py
GC_MSG, SINGLE_MSG_RECV, CHAT_MSG_RECV, SINGLE_MSG_SENT, CHAT_MSG_SENT = 2, 3, 4, 5, 6
KINDS = {
    GC_MSG: "groupchat",
    SINGLE_MSG_RECV: "received",
    CHAT_MSG_RECV: "received",
    SINGLE_MSG_SENT: "sent",
    CHAT_MSG_SENT: "sent",
}
COLUMNS = (
    "log_line_id",
    "account_id",
    "jid_id",
    "contact_name",
    "occupant_id",
    "real_jid",
    "time",
    "kind",
    "show",
    "message",
    "error",
    "subject",
    "additional_data",
    "stanza_id",
    "message_id",
    "encryption",
    "encryption_state",
    "marker",
)
PAGE = 500


class GajimHistory:
    """The messages of a Gajim history database, oldest row first."""

    kind = "gajim"

    def __init__(self, path: Path, *, max_item: int = MAX_ITEM_BYTES) -> None:
        self.path = path
        self.name = str(path)
        self.max_item = max_item
        self.total: int | None = None
        if not path.is_file():
            raise UnreadableSource(f"{path}: no such file")
        with self._connect() as db:
            self._check(db)

    def _connect(self) -> sqlite3.Connection:
        try:
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            return sqlite3.connect(uri, uri=True)
        except sqlite3.Error as exc:
            raise UnreadableSource(f"{self.path}: cannot be opened ({exc})") from None

    def _check(self, db: sqlite3.Connection) -> None:
        try:
            cols = {r[1] for r in db.execute("PRAGMA table_info(logs)")}
            jids = {r[1] for r in db.execute("PRAGMA table_info(jids)")}
        except sqlite3.DatabaseError as exc:
            raise UnreadableSource(f"{self.path}: not an SQLite database ({exc})") from None
        missing = sorted({"log_line_id", "jid_id", "kind", "message", "time"} - cols)
        if missing or not {"jid_id", "jid"} <= jids:
            raise UnreadableSource(
                f"{self.path}: not a Gajim history database (no logs table with "
                f"{', '.join(missing) or 'a jids table'})"
            )

    def items(self) -> Iterator[Found]:
        with self._connect() as db:
            present = [r[1] for r in db.execute("PRAGMA table_info(logs)")]
            cols = [c for c in COLUMNS if c in present]
            jids = {int(r[0]): str(r[1]) for r in db.execute("SELECT jid_id, jid FROM jids")}
            size_sql = "COALESCE(LENGTH(CAST(message AS BLOB)), 0)"
            if "additional_data" in present:
                size_sql += " + COALESCE(LENGTH(CAST(additional_data AS BLOB)), 0)"
            after, pos = -1, 0
            kinds = ", ".join(str(k) for k in KINDS)
            total = db.execute(f"SELECT SUM({size_sql}) FROM logs WHERE kind IN ({kinds})")
            self.total = int(total.fetchone()[0] or 0)
            while True:
                rows = db.execute(
                    f"SELECT log_line_id, {size_sql} FROM logs WHERE log_line_id > ? "
                    f"AND kind IN ({kinds}) ORDER BY log_line_id LIMIT {PAGE}",
                    (after,),
                ).fetchall()
                if not rows:
                    return
                for line_id, size in rows:
                    after = int(line_id)
                    pos += int(size)
                    yield self._row(db, cols, jids, after, int(size), pos)

    def _row(
        self,
        db: sqlite3.Connection,
        cols: list[str],
        jids: dict[int, str],
        line_id: int,
        size: int,
        pos: int,
    ) -> Found:
        if size > self.max_item:
            sha = hashlib.sha256(f"gajim log_line_id {line_id}".encode()).hexdigest()
            return Found(
                key=f"log_line_id={line_id}", raw=None, size=size, sha256=sha, position=pos
            )
        values = db.execute(
            f"SELECT {', '.join(cols)} FROM logs WHERE log_line_id = ?", (line_id,)
        ).fetchone()
        row = dict(zip(cols, values, strict=True))
        peer = jids.get(int(row.get("jid_id") or -1), "")
        account = jids.get(int(row.get("account_id") or -1), "")
        doc = {
            "format": "gajim-logs-row/1",
            "conversation_jid": peer,
            "account_jid": account,
            "row": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()},
        }
        raw = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")
        sha = hashlib.sha256(raw).hexdigest()
        kind = KINDS.get(int(row["kind"]), "message")
        nick = str(row.get("contact_name") or "") or None
        if kind == "groupchat":
            real = str(row.get("real_jid") or "").partition("/")[0]
            ids = [Identity(source="jid", address=real, display_name=nick)] if real else []
            ids.append(Identity(source="jid", display_name=nick))
        else:
            ids = [Identity(source="jid", address=peer, display_name=nick)]
        when = row.get("time")
        date = ""
        if isinstance(when, int | float):
            date = datetime.fromtimestamp(when, UTC).isoformat()
        summary = Summary(
            subject=str(row.get("message") or "")[:200].replace("\n", " "),
            message_id=str(row.get("message_id") or row.get("stanza_id") or ""),
            date=date,
        )
        meta = (
            ("format", "gajim-logs-row/1 (a row of Gajim's history database as JSON)"),
            ("direction", kind),
            ("conversation", peer),
        )
        return Found(
            key=f"log_line_id={line_id}:{sha}",
            raw=raw,
            size=len(raw),
            sha256=sha,
            position=pos,
            channel=Channel.XMPP,
            meta=meta,
            identities=tuple(ids),
            summary=summary,
        )
