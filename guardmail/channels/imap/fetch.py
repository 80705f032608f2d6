"""Reading a whole IMAP folder for ``guardmail import``: read-only, in bounded chunks.

Contracts:
- The folder is selected read-only (EXAMINE) and messages fetched with ``BODY.PEEK[]``: nothing
  in the mailbox changes, not even \\Seen.
- Each item is keyed by ``UIDVALIDITY/UID`` (an import resumed after a crash skips the keys it
  recorded; a new UIDVALIDITY makes new keys, and the vault's dedupe keeps the same bytes once).
- Bounded: sizes (``RFC822.SIZE``) are fetched first; a message over the bound is not fetched
  (reported as too large); bodies are fetched at most ``CHUNK`` messages or ``CHUNK_BYTES``
  bytes a command.
- Connecting goes through ``conn.connect`` (TLS verified, the password read at connect time,
  never in a reason); its ConnectFailure and the connection's errors become UnreadableSource.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap.conn import CONNECTION_ERRORS, close_quietly, connect
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.errors import ConnectFailure
from guardmail.imports import MAX_ITEM_BYTES, Found, UnreadableSource

CHUNK = 100
CHUNK_BYTES = 16 * 1024 * 1024


class ImapFolder:
    """One folder of a configured IMAP source."""

    kind = "imap"

    def __init__(self, cfg: ImapSourceConfig, folder: str, *, max_item: int = MAX_ITEM_BYTES):
        self.cfg = cfg
        self.folder = folder
        self.name = f"{cfg.name}/{folder}"
        self.max_item = max_item
        self.total: int | None = None

    def items(self) -> Iterator[Found]:
        try:
            client = connect(self.cfg)
        except ConnectFailure as exc:
            raise UnreadableSource(f"IMAP source {self.cfg.name!r}: {exc.reason}") from None
        try:
            yield from self._read(client)
        except CONNECTION_ERRORS as exc:
            raise UnreadableSource(
                f"IMAP source {self.cfg.name!r}, folder {self.folder!r}: "
                f"{type(exc).__name__} while reading"
            ) from None
        finally:
            close_quietly(client)

    def _read(self, client: IMAPClient) -> Iterator[Found]:
        selected = client.select_folder(self.folder, readonly=True)
        validity = int(selected[b"UIDVALIDITY"])
        uids = sorted(int(u) for u in client.search("ALL"))
        sizes: dict[int, int] = {}
        for k in range(0, len(uids), 1000):
            reply: dict[int, dict[bytes, Any]] = client.fetch(uids[k : k + 1000], ["RFC822.SIZE"])
            sizes.update({int(u): int(d.get(b"RFC822.SIZE", 0)) for u, d in reply.items()})
        uids = [u for u in uids if u in sizes]  # expunged meanwhile: gone
        self.total = sum(sizes.values())
        pos = 0
        chunk: list[int] = []
        held = 0
        for uid in [*uids, 0]:
            if uid and sizes[uid] > self.max_item:
                pos += sizes[uid]
                sha = hashlib.sha256(f"imap {validity}/{uid}".encode()).hexdigest()
                yield Found(
                    key=f"{validity}/{uid}", raw=None, size=sizes[uid], sha256=sha, position=pos
                )
                continue
            if uid:
                chunk.append(uid)
                held += sizes[uid]
            if chunk and (not uid or len(chunk) >= CHUNK or held >= CHUNK_BYTES):
                got = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"])
                for u in chunk:
                    data = got.get(u)
                    if data is None or not isinstance(data.get(b"BODY[]"), bytes):
                        continue  # expunged since: nothing to import
                    raw: bytes = data[b"BODY[]"]
                    pos += sizes[u]
                    sha = hashlib.sha256(raw).hexdigest()
                    flags = " ".join(f.decode("ascii", "replace") for f in data.get(b"FLAGS", ()))
                    meta = (
                        ("imap_folder", self.folder),
                        ("imap_uid", f"{validity}/{u}"),
                        ("imap_internaldate", str(data.get(b"INTERNALDATE", ""))),
                        ("imap_flags", flags),
                    )
                    yield Found(
                        key=f"{validity}/{u}:{sha}",
                        raw=raw,
                        size=len(raw),
                        sha256=sha,
                        position=pos,
                        meta=meta,
                    )
                chunk, held = [], 0
