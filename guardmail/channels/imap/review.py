"""A message held in the IMAP review folder, moved on by a person's decision (``guardmail
review confirm`` / ``dismiss``): back to the folder it came from, or on to quarantine.

Contracts:
- The message is found by its bytes: candidates (those with its Message-ID, else the newest
  ``MAX_CANDIDATES`` of the folder) are fetched with ``BODY.PEEK[]`` (no \\Seen) and only one
  whose SHA-256 is the archived one is moved, with the same commands as the watcher's (MOVE,
  else COPY + \\Deleted + UID EXPUNGE of that UID alone).
- If the review folder no longer holds it, ``move_held`` with ``append_if_missing`` APPENDs
  the vault's copy (the exact archived bytes) to the target folder instead.
"""

from __future__ import annotations

import hashlib
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap.act import FolderActions
from guardmail.channels.imap.conn import close_quietly, connect
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.core.rules import Action

MAX_CANDIDATES = 200
_BODY = b"BODY[]"


def _find(client: IMAPClient, sha256: str, message_id: str) -> int | None:
    mid = message_id.strip()
    if mid and len(mid) <= 500 and mid.isascii() and mid.isprintable():
        uids = client.search(["HEADER", "Message-ID", mid])
    else:
        uids = client.search(["ALL"])
    uids = sorted(uids)[-MAX_CANDIDATES:]
    if not uids:
        return None
    fetched: dict[int, dict[bytes, Any]] = client.fetch(uids, ["BODY.PEEK[]"])
    for uid in sorted(fetched):
        body = fetched[uid].get(_BODY)
        if isinstance(body, bytes) and hashlib.sha256(body).hexdigest() == sha256:
            return uid
    return None


def move_held(
    cfg: ImapSourceConfig,
    *,
    review: str,
    target: str | None,
    sha256: str,
    message_id: str,
    raw: bytes | None = None,
) -> str:
    """Move the held message (found by ``sha256``) from ``review`` to ``target`` (None: delete
    it); when it is not there and ``raw`` is given, APPEND ``raw`` to ``target``. What was done."""
    client = connect(cfg)
    try:
        client.select_folder(review)
        uid = _find(client, sha256, message_id)
        if uid is None:
            if raw is None or target is None:
                return f"not in {review} any more"
            client.append(target, raw)
            return f"appended the archived bytes to {target} (it was gone from {review})"
        action = Action.BLOCK if target is None else Action.QUARANTINE
        actions = FolderActions(folder=review, quarantine=target or review)
        [done] = actions.carry_out(client, [uid], [action])
        return done
    finally:
        close_quietly(client)
