"""Reading a batch of new UIDs of a folder: headers for all, whole messages for offenders only.

Contracts:
- Every message is judged on ``BODY.PEEK[HEADER]`` (PEEK: no \\Seen): its whole header section,
  not the named fields (``fetch_headers(fields=...)``): Dovecot and core cut fields apart
  differently around a line that is no field (tests/integration/test_imap_fields.py). Only
  those to block are fetched whole (``BODY.PEEK[]``), never clean mail.
- Whole messages are fetched in chunks of at most ``WHOLE_MESSAGES`` messages and about
  ``WHOLE_BYTES`` bytes by RFC822.SIZE (a message larger than that comes alone), so memory stays
  bounded however many offender messages a batch holds.
- A UID asked for but missing from a FETCH reply is skipped only once a UID SEARCH no longer
  finds it (expunged by someone else meanwhile); if it is still there, ``ConnectionError``: the
  caller reconnects and retries from its checkpoint rather than skip mail it did not judge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap.fetch_reply import header_of, read_headers_reply, send_headers_fetch
from guardmail.core.item import Channel, Item, mail_identities, mail_item

WHOLE_MESSAGES = 500
WHOLE_BYTES = 32 * 1024 * 1024

WHOLE = b"BODY[]"


@dataclass(frozen=True, slots=True, kw_only=True)
class Folder:
    """Where messages come from: makes their references, Items and evidence metadata."""

    tenant: str
    account: str
    folder: str
    uidvalidity: int

    def ref(self, uid: int) -> str:
        return f"imap:{self.account}/{self.folder};UIDVALIDITY={self.uidvalidity}/;UID={uid}"

    def probe(self, uid: int, header: bytes, now: datetime) -> Item:
        """An Item of the header alone: enough to judge (its identities), never archived, so
        without the summary a person would read (~14 us a message saved, ~0.3 s in 20,000)."""
        return Item(
            raw=header,
            channel=Channel.MAIL,
            tenant=self.tenant,
            account=self.account,
            source_ref=self.ref(uid),
            received_at=now,
            identities=mail_identities(header),
        )

    def item(self, uid: int, whole: dict[bytes, Any], now: datetime) -> Item:
        """The Item of a whole message as fetched, with the facts kept beside the evidence."""
        meta = (
            ("folder", self.folder),
            ("uid", str(uid)),
            ("uidvalidity", str(self.uidvalidity)),
            ("internaldate", _iso(whole.get(b"INTERNALDATE"))),
            ("flags", " ".join(_text(f) for f in whole.get(b"FLAGS", ()))),
        ) + gmail_meta(whole)
        return mail_item(
            whole[WHOLE],
            tenant=self.tenant,
            account=self.account,
            source_ref=self.ref(uid),
            received_at=now,
            meta=meta,
            dedupe_scope=f"imap:{self.account}/{self.folder}",
        )


def fetch_headers(
    client: IMAPClient, uids: Sequence[int], fields: tuple[str, ...] | None = None
) -> dict[int, tuple[bytes, int]]:
    """(header bytes, RFC822.SIZE) of each UID still in the folder: the whole header section,
    or only ``fields`` (as the server gives them: in the message's order, then an empty line)."""
    return HeaderFetch(client, uids, fields).result()


class HeaderFetch:
    """``fetch_headers`` in two halves: the FETCH is sent at once, its reply read by
    ``result()``, so that the server reads one batch while this side judges the one before.
    Until ``result()`` the connection may be used for nothing else: untagged FETCH replies of
    two commands would mix."""

    def __init__(
        self, client: IMAPClient, uids: Sequence[int], fields: tuple[str, ...] | None = None
    ) -> None:
        self._client = client
        self._uids = list(uids)
        self.fields = fields
        self._tag = send_headers_fetch(client, self._uids, fields)
        self._result: dict[int, tuple[bytes, int]] | None = None

    def result(self) -> dict[int, tuple[bytes, int]]:
        """(header bytes, RFC822.SIZE) of each UID still in the folder (read once)."""
        if self._result is None:
            uids = self._uids
            reply = read_headers_reply(self._client, self._tag, uids, self.fields)
            found: dict[int, tuple[bytes, int]] = {}
            for u in uids:
                # An entry without the part asked for is an unsolicited FETCH (flags).
                header = header_of(reply.get(u, {}))
                if header is not None:
                    found[u] = (header, int(reply[u].get(b"RFC822.SIZE", 0)))
            confirm_gone(self._client, [u for u in uids if u not in found])
            self._result = found
        return self._result


def gmail_meta(whole: dict[bytes, Any]) -> tuple[tuple[str, str], ...]:
    """Gmail's message id and labels (X-GM-EXT-1), kept beside the evidence: the id finds the
    message in any label later; the labels say where the person saw it."""
    if b"X-GM-MSGID" not in whole:
        return ()
    labels = whole.get(b"X-GM-LABELS") or ()
    return (
        ("gmail_msgid", _text(whole[b"X-GM-MSGID"])),
        # A JSON list: label names may hold spaces.
        ("gmail_labels", json.dumps([_text(label) for label in labels], ensure_ascii=False)),
    )


def fetch_whole(client: IMAPClient, uids: Sequence[int]) -> dict[int, dict[bytes, Any]]:
    """``BODY.PEEK[] INTERNALDATE FLAGS`` of each UID still in the folder (and at Gmail,
    ``X-GM-MSGID X-GM-LABELS``)."""
    parts = ["BODY.PEEK[]", "INTERNALDATE", "FLAGS"]
    if client.has_capability("X-GM-EXT-1"):
        parts += ["X-GM-MSGID", "X-GM-LABELS"]
    reply = client.fetch(list(uids), parts)
    found = {u: reply[u] for u in _got(reply, uids, WHOLE)}
    confirm_gone(client, [u for u in uids if u not in found])
    return found


def _got(reply: dict[int, dict[bytes, Any]], uids: Sequence[int], key: bytes) -> list[int]:
    # A reply entry without the part asked for is an unsolicited FETCH (flags someone changed).
    return [u for u in uids if key in reply.get(u, {})]


def confirm_gone(client: IMAPClient, missing: Sequence[int]) -> None:
    """Return if none of ``missing`` is in the folder any more; else ``ConnectionError``."""
    if not missing:
        return
    # The server answers a UID set with the highest UID even when that is not in the set.
    still = set(client.search(["UID", ",".join(map(str, missing))])) & set(missing)
    if still:
        raise ConnectionError(f"FETCH did not return UIDs {sorted(still)}")


def chunks(
    sized: Sequence[tuple[int, int]],
    *,
    max_messages: int = WHOLE_MESSAGES,
    max_bytes: int = WHOLE_BYTES,
) -> Iterator[list[tuple[int, int]]]:
    """The (uid, size) pairs in order, in runs of at most ``max_messages`` and, unless one
    message alone is larger, at most ``max_bytes``. Every run but the last is full: the next
    message would not have fitted."""
    run: list[tuple[int, int]] = []
    size = 0
    for uid, n in sized:
        if run and (len(run) >= max_messages or size + n > max_bytes):
            yield run
            run, size = [], 0
        run.append((uid, n))
        size += n
    if run:
        yield run


class Pending:
    """Offender UIDs judged on their headers but not yet archived and acted on, in UID order.

    Header batches feed it; whole-message chunks leave it as soon as they are full, so one
    UID MOVE covers up to a full chunk however thinly offenders are spread over the folder.
    """

    def __init__(self, *, max_messages: int = WHOLE_MESSAGES, max_bytes: int = WHOLE_BYTES) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._sized: list[tuple[int, int]] = []

    def __bool__(self) -> bool:
        return bool(self._sized)

    def add(self, sized: Sequence[tuple[int, int]]) -> None:
        self._sized.extend(sized)

    @property
    def first(self) -> int:
        """The lowest UID pending (the checkpoint must stay below it)."""
        return self._sized[0][0]

    def full(self) -> list[list[int]]:
        """Take the full chunks out; a last one that could still grow stays."""
        runs = list(chunks(self._sized, max_messages=self.max_messages, max_bytes=self.max_bytes))
        if runs and len(runs[-1]) < self.max_messages:
            self._sized = runs.pop()
        else:
            self._sized = []
        return [[uid for uid, _ in run] for run in runs]

    def rest(self) -> list[list[int]]:
        """Take every chunk out, the last one possibly not full."""
        runs = chunks(self._sized, max_messages=self.max_messages, max_bytes=self.max_bytes)
        self._sized = []
        return [[uid for uid, _ in run] for run in runs]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else _text(value or "")
