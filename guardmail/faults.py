"""Crash points for crash tests: ``GUARDMAIL_FAULT=POINT:COUNT`` kills the process (SIGKILL) the
COUNT-th time it reaches POINT, as a power cut or the OOM killer would.

Honoured only when the variable is set, which tests and ``bench/chaos.py`` do; in production
``reached`` costs one comparison. With ``GUARDMAIL_FAULT_LOG=FILE`` every point reached is
appended to FILE (one name a line, flushed before a kill), so a campaign can report which points
it reached.

Points (``POINTS``), each placed just after a step became durable and before the next:
- ``vault.blob``: a blob is fsync'd and renamed into place; its journal entry is not written
  (a direct ``Vault.put_many``; the sources archive through the group commit, below).
- ``vault.group``: the same instant in a group commit (``guardmail.vault.group``): every blob of
  the group is fsync'd and its directory too; none of the group's entries is committed.
- ``vault.writer``: in the blob writer child (``guardmail.vault.blobwriter``), a group's blobs
  are durable and renamed into place; the child has not answered (the group then fails as a
  whole: nothing of it is journaled).
- ``pipeline.archived``: the items' journal entries are committed; nothing is acted on yet.
- ``pipeline.acted``: the actor returned; the action entries are not journaled yet.
- ``pipeline.journaled``: the action entries are committed; the HEAD witness is not written.
- ``maildir.moved``: a Maildir file is renamed (or unlinked); the directories are not fsync'd.
- ``smtp.relayed``: the SMTP filter's next hop accepted the clean copies and that is recorded;
  Postfix has not been answered.
- ``smtp.quarantined``: the next hop accepted the quarantine copy and that is recorded; the
  pipeline's action entry is not journaled, Postfix not answered.
- ``smtp.replied``: the filter's reply to Postfix is decided (everything durable); not written.
- ``milter.replied``: the milter's answer at the end of a message is decided (archived, acted on,
  journaled); it is not written to Postfix.
- ``imap.moved``: the UID MOVE to the quarantine folder (or, without MOVE, the UID COPY + STORE
  + UID EXPUNGE) returned OK; a ``block`` of the same chunk is not done, nothing is journaled.
- ``imap.copied``: without MOVE, the UID COPY to the quarantine folder returned OK; the
  originals are not marked \\Deleted yet.
- ``imap.flagged``: the messages are marked \\Deleted (UID STORE); the UID EXPUNGE is not sent.
- ``xmpp.cursor``: an XMPP archive (MAM) page was handled and its cursor saved; the next page is
  not asked for yet.
- ``import.committed``: a batch of an import (its entries and progress marks) is committed;
  the next batch is not read yet.
- ``xmpp.blocklisted``: the server accepted a blocklist change (XEP-0191 block or unblock); a
  block was recorded as guardmail's before it was sent, an unblock's record is not updated yet.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "vault.blob",
        "vault.group",
        "vault.writer",
        "pipeline.archived",
        "pipeline.acted",
        "pipeline.journaled",
        "maildir.moved",
        "smtp.relayed",
        "smtp.quarantined",
        "smtp.replied",
        "milter.replied",
        "imap.moved",
        "imap.copied",
        "imap.flagged",
        "xmpp.cursor",
        "xmpp.blocklisted",
        "import.committed",
    }
)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, count = value.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"GUARDMAIL_FAULT={value!r}: expected POINT:COUNT, POINT one of {sorted(POINTS)}"
        )
    return point, int(count)


_TARGET = _parse(os.environ.get("GUARDMAIL_FAULT"))
_LOG = os.environ.get("GUARDMAIL_FAULT_LOG")
_seen: dict[str, int] = {}


def reached(point: str) -> None:
    """Mark ``point`` (one of ``POINTS``); kill the process if it is the configured fault."""
    if _TARGET is None and _LOG is None:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _LOG is not None:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(point + "\n")
    if _TARGET is not None and _TARGET == (point, _seen[point]):
        os.kill(os.getpid(), signal.SIGKILL)
