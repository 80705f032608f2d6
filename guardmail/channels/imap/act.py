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
- The caller has archived every message before calling (the pipeline's contract); this module
  only does protocol I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientError

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


class FolderActions:
    """The actions one connection carries out in one watched folder."""

    def __init__(self, *, folder: str, quarantine: str, review: str = "Review") -> None:
        self.folder = folder
        self.quarantine = quarantine
        self.review = review
        self._ready: set[str] = set()  # target folders known to exist on this connection

    def reset(self) -> None:
        """A new connection: check the target folders again before the next move."""
        self._ready.clear()

    def carry_out(
        self, client: IMAPClient, uids: Sequence[int], actions: Sequence[Action]
    ) -> list[str]:
        """Act on each UID as its action says; one description per UID, in order."""
        known = (Action.QUARANTINE, Action.BLOCK, Action.REVIEW)
        unknown = [str(a) for a in actions if a not in known]
        if unknown:
            raise ValueError(f"no IMAP action for a {unknown[0]!r} verdict")
        to_quarantine = [u for u, a in zip(uids, actions, strict=True) if a is Action.QUARANTINE]
        to_review = [u for u, a in zip(uids, actions, strict=True) if a is Action.REVIEW]
        to_delete = [u for u, a in zip(uids, actions, strict=True) if a is Action.BLOCK]
        done: dict[int, str] = {}
        if to_quarantine:
            done.update(self._move(client, to_quarantine, self.quarantine))
        if to_review:
            done.update(self._move(client, to_review, self.review))
        if to_delete:
            removed = _remove(client, to_delete)
            note = _together("UID STORE + UID EXPUNGE", to_delete)
            done.update((u, f"deleted UID {u}: {removed}{note}") for u in to_delete)
        return [done[u] for u in uids]

    def _move(self, client: IMAPClient, uids: list[int], target: str) -> dict[int, str]:
        if self.folder == target:
            return {u: f"UID {u} left in {target}, where the server's Sieve filed it" for u in uids}
        self._ensure(client, target)
        if client.has_capability("MOVE"):
            client.move(uids, target)
            note = _together("UID MOVE", uids)
            return {u: f"moved UID {u} to {target}{note}" for u in uids}
        client.copy(uids, target)
        removed = _remove(client, uids)
        note = _together("UID COPY + UID STORE + UID EXPUNGE", uids)
        return {u: f"copied UID {u} to {target}; {removed}{note}" for u in uids}

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
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)  # these UIDs alone, never a bare EXPUNGE
        return "expunged by UID"
    return "marked \\Deleted (no UIDPLUS: left for the mail client to expunge)"
