"""Carrying out verdicts on messages of the selected IMAP folder, one set of UIDs at a time.

Contracts:
- Only the UIDs given are touched, each set with as few commands as the server allows: one
  UID MOVE of the set to the quarantine folder; where the server lacks MOVE, one UID COPY of the
  set, one UID STORE +FLAGS.SILENT (\\Deleted) of the set and one UID EXPUNGE of exactly that set.
- Never a bare EXPUNGE: it would remove every message anyone marked \\Deleted. Without UIDPLUS
  the messages stay marked \\Deleted for the user's own client to expunge.
- Quarantining into the watched folder itself leaves the mail where it is (the server's Sieve
  filed it there); a ``block`` verdict still deletes. A ``review`` verdict (a suspected alias)
  moves the set to the review folder the same way, or leaves it if that is the watched folder.
- A UID someone else expunged meanwhile is simply not there: the server acts on the rest.
- Without MOVE, a crash between the UID COPY and the UID EXPUNGE leaves the originals in the
  folder, to be acted on again: the UIDs about to be copied are marked durably first (``marks``),
  and a marked UID is copied again only if the target folder holds no message with its exact
  bytes, so the quarantine (or review) folder gets each message once.
- The caller has archived every message before calling (the pipeline's contract); this module
  only does protocol I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientError

from guardmail import faults
from guardmail.core.rules import Action


def uid_set(uids: Sequence[int]) -> str:
    """The UIDs as a compact IMAP sequence set: ``[3, 4, 5, 9]`` -> ``3:5,9``."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = prev = ordered[0] if ordered else 0
    for uid in ordered[1:]:
        if uid != prev + 1:
            parts.append(f"{start}:{prev}" if prev > start else str(start))
            start = uid
        prev = uid
    if ordered:
        parts.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(parts)


def _together(command: str, uids: Sequence[int]) -> str:
    """How the journal says that one command covered several messages."""
    return "" if len(uids) == 1 else f" (one {command} of {len(uids)} UIDs: {uid_set(uids)})"


# How many messages of the quarantine folder of one size are compared, at most, when looking for
# the copy a crash may have left (the sender chooses sizes: bounded).
SAME_SIZE_LIMIT = 20


class CopyMarks(Protocol):
    """UIDs of the watched folder a UID COPY may have copied already (kept across crashes)."""

    def marked(self) -> set[int]: ...

    def mark(self, uids: Sequence[int]) -> None:
        """Add ``uids``, durably, before their COPY."""

    def unmark(self, uids: Sequence[int]) -> None:
        """Take ``uids`` out, once they are expunged (or marked \\Deleted) after their COPY."""


class FolderActions:
    """The actions one connection carries out in one watched folder."""

    def __init__(
        self,
        *,
        folder: str,
        quarantine: str,
        review: str = "Review",
        marks: CopyMarks | None = None,
    ) -> None:
        self.folder = folder
        self.quarantine = quarantine
        self.review = review
        self.marks = marks
        self._ready: set[str] = set()  # target folders known to exist on this connection

    def reset(self) -> None:
        """A new connection: check the target folders again before the next move."""
        self._ready.clear()

    def carry_out(
        self,
        client: IMAPClient,
        uids: Sequence[int],
        actions: Sequence[Action],
        raws: Sequence[bytes] = (),
    ) -> list[str]:
        """Act on each UID as its action says; one description per UID, in order. ``raws``:
        each UID's exact bytes, to recognise a copy a crash left (without MOVE)."""
        known = (Action.QUARANTINE, Action.BLOCK, Action.REVIEW)
        unknown = [str(a) for a in actions if a not in known]
        if unknown:
            raise ValueError(f"no IMAP action for a {unknown[0]!r} verdict")
        to_quarantine = [u for u, a in zip(uids, actions, strict=True) if a is Action.QUARANTINE]
        to_review = [u for u, a in zip(uids, actions, strict=True) if a is Action.REVIEW]
        to_delete = [u for u, a in zip(uids, actions, strict=True) if a is Action.BLOCK]
        done: dict[int, str] = {}
        raw_of = dict(zip(uids, raws, strict=False))
        if to_quarantine:
            done.update(self._move(client, to_quarantine, self.quarantine, raw_of))
        if to_review:
            done.update(self._move(client, to_review, self.review, raw_of))
        if to_delete:
            removed = _remove(client, to_delete)
            note = _together("UID STORE + UID EXPUNGE", to_delete)
            done.update((u, f"deleted UID {u}: {removed}{note}") for u in to_delete)
        return [done[u] for u in uids]

    def _move(
        self, client: IMAPClient, uids: list[int], target: str, raw_of: dict[int, bytes]
    ) -> dict[int, str]:
        if self.folder == target:
            return {u: f"UID {u} left in {target}, where the server's Sieve filed it" for u in uids}
        self._ensure(client, target)
        if client.has_capability("MOVE"):
            client.move(uids, target)
            faults.reached("imap.moved")
            note = _together("UID MOVE", uids)
            return {u: f"moved UID {u} to {target}{note}" for u in uids}
        there = self._copied_before(client, uids, target, raw_of)
        to_copy = [u for u in uids if u not in there]
        if to_copy:
            if self.marks is not None:
                self.marks.mark(to_copy)
            client.copy(to_copy, target)
            faults.reached("imap.copied")
        removed = _remove(client, uids)
        faults.reached("imap.moved")
        if self.marks is not None:
            self.marks.unmark(uids)
        note = _together("UID COPY + UID STORE + UID EXPUNGE", to_copy)
        done = {u: f"copied UID {u} to {target}; {removed}{note}" for u in to_copy}
        done.update(
            (u, f"UID {u} already copied to {target} before a restart; {removed}") for u in there
        )
        return done

    def _copied_before(
        self, client: IMAPClient, uids: list[int], target: str, raw_of: dict[int, bytes]
    ) -> set[int]:
        """The marked UIDs whose exact bytes ``target`` already holds."""
        marked = self.marks.marked() if self.marks is not None else set()
        wanted = {u: raw_of[u] for u in uids if u in marked and u in raw_of}
        if not wanted:
            return set()
        found: set[int] = set()
        client.select_folder(target, readonly=True)
        try:
            for uid, raw in wanted.items():
                size = len(raw)
                same = client.search(["LARGER", str(size - 1), "SMALLER", str(size + 1)])
                # The newest first (a crash's copy is recent), one at a time: memory holds one.
                for candidate in sorted(same, reverse=True)[:SAME_SIZE_LIMIT]:
                    reply = client.fetch([candidate], ["BODY.PEEK[]"])
                    if reply.get(candidate, {}).get(b"BODY[]") == raw:
                        found.add(uid)
                        break
        finally:
            client.select_folder(self.folder)
        return found

    def _ensure(self, client: IMAPClient, target: str) -> None:
        if target in self._ready:
            return
        if not client.folder_exists(target):
            try:
                client.create_folder(target)
            except IMAPClientError as exc:
                # Another client (or our own other folder's watcher) created it meanwhile.
                if "EXISTS" not in str(exc).upper():  # [ALREADYEXISTS] (RFC 5530)
                    raise
            client.subscribe_folder(target)
        self._ready.add(target)


def _remove(client: IMAPClient, uids: list[int]) -> str:
    client.add_flags(uids, [DELETED], silent=True)
    faults.reached("imap.flagged")
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)  # these UIDs alone, never a bare EXPUNGE
        return "expunged by UID"
    return "marked \\Deleted (no UIDPLUS: left for the mail client to expunge)"
