"""A scan's memo of header judgments: a sender seen before costs one parse and a look-up.

A first scan judges every header of a folder (20,000 in the bench), in a real mailbox mostly
from senders it has met before; judging one afresh costs ~40 us (its fields, identities,
``decide``, the impersonation checks), looking its key up ~3.

Contracts:
- The key is, as bytes, the fields the judgment reads with their continuation lines, in
  header order (the sender fields, or a Sent folder's recipients; with impersonation checks
  also Authentication-Results, Content-Type and Auto-Submitted), and the bytes after the header
  section (where a report's returned message is looked for). A header with a line that is
  neither a field nor a continuation has no key (core/headers.py joins the continuation lines
  after such a line to the field before it). So ``header_fields`` reads the same fields the
  judgment reads from a header and from its key, and two headers with one key are judged
  alike whatever else they hold (Message-ID, Date and Received differ in each message).
- Only a header section whose every line ends with CRLF and that is at most ``HEADER_BYTES``
  long has a key (nearly all mail); any other is judged afresh each time.
- Kept for one configuration: the rules, the person's own names and the linker are replaced
  by a reload, so ``now()`` starts a new memo when any of them is another object. No memo
  (``now()`` gives None) while the alias linker is enabled: it reads the whole header.
- Worth its cost or left alone: a key costs ~3 us, ~10% of judging; where few senders repeat
  (the bench's 20,000 senders are all distinct) a memo that hit fewer than 1 in ``WORTH``
  look-ups after ``SAMPLE`` is consulted for one batch in ``WORTH`` only (``worth()``).
- Bounded: at most ``ENTRIES`` keys of at most ``KEY_BYTES`` bytes each (a header with a
  longer one is judged every time, not kept); a full memo starts over. A sender's bytes can
  make it miss, never grow it past that.
"""

from __future__ import annotations

import re

from guardmail.core.item import IDENTITY_HEADERS, RECIPIENT_HEADERS
from guardmail.pipeline import Pipeline

# What core/impersonation.py's ``check`` and ``may_be_backscatter`` read beside the senders.
IMPERSONATION_HEADERS = ("Authentication-Results", "Content-Type", "Auto-Submitted")
# 8,192 keys of the usual ~100 bytes hold about a MB, and at most 8,192 x KEY_BYTES (16 MiB)
# whatever a sender writes.
ENTRIES = 8192
KEY_BYTES = 2048
HEADER_BYTES = 64 * 1024
SAMPLE = 1000
WORTH = 8
# A line that starts a field as core/headers.py takes one: RFC 5322 ftext, blanks, a colon.
_NAME = rb"[\x21-\x39\x3b-\x7e]+[ \t]*:"
# A line (after its line break) that is neither a field nor a continuation.
_NO_FIELD = re.compile(rb"\r\n(?![ \t]|" + _NAME + rb")")

Key = tuple[bytes, bytes]


class Memo:
    """The decisions of one configuration: key -> whether to fetch the message whole."""

    def __init__(self, *, fields: tuple[str, ...], rest: bool) -> None:
        read = b"|".join(re.escape(f.encode("ascii")) for f in fields)
        # A field read, with its continuation lines (each search starts at a line break: the
        # regex engine looks for that literal first).
        self._read = re.compile(
            rb"\r\n((?:" + read + rb")[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.IGNORECASE
        )
        self._rest = rest  # the bytes after the header section are read too
        self._known: dict[Key, bool] = {}
        self._lookups = 0
        self._hits = 0
        self._batches = 0

    def worth(self) -> bool:
        """Whether to consult the memo for the next batch (asked once a batch)."""
        self._batches += 1
        return (
            self._lookups < SAMPLE
            or self._hits * WORTH >= self._lookups
            or self._batches % WORTH == 0
        )

    def __len__(self) -> int:
        return len(self._known)

    def key(self, header: bytes) -> Key | None:
        """What the judgment reads of ``header``; None if it has no key (see above)."""
        if len(header) > HEADER_BYTES:
            return None
        end = header.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = b"\r\n" + header[:end]  # each line after a line break
        crlf = head.count(b"\r\n")
        if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
            return None  # a bare CR or LF: core's other way of cutting lines
        if _NO_FIELD.search(head) is not None:
            return None
        kept = b"\r\n".join(self._read.findall(head))
        rest = header[end:] if self._rest else b""
        if len(kept) + len(rest) > KEY_BYTES:
            return None
        return (kept, rest)

    def get(self, key: Key) -> bool | None:
        self._lookups += 1
        got = self._known.get(key)
        if got is not None:
            self._hits += 1
        return got

    def put(self, key: Key, whole: bool) -> None:
        if len(self._known) >= ENTRIES:
            self._known.clear()
        self._known[key] = whole


class HeaderMemo:
    """A folder's memo, renewed when the configuration it was kept for is replaced."""

    def __init__(self, pipeline: Pipeline, *, outgoing: bool) -> None:
        self.pipeline = pipeline
        self.outgoing = outgoing
        self._memo: Memo | None = None
        self._of: tuple[object, ...] = ()

    def now(self) -> Memo | None:
        """The memo for the configuration in force; None if the judgment reads all."""
        pipeline = self.pipeline
        linker = pipeline.linker
        if linker is not None and linker.config.enabled and not self.outgoing:
            return None
        of = (pipeline.rules, pipeline.own, linker, linker.config if linker else None)
        held = self._of
        if self._memo is None or any(a is not b for a, b in zip(of, held, strict=True)):
            self._memo = Memo(fields=self._fields(), rest=self._rest())
            self._of = of
        return self._memo

    def _fields(self) -> tuple[str, ...]:
        if self.outgoing:
            return RECIPIENT_HEADERS
        if self.pipeline.own is not None:
            return IDENTITY_HEADERS + IMPERSONATION_HEADERS
        return IDENTITY_HEADERS

    def _rest(self) -> bool:
        return not self.outgoing and self.pipeline.own is not None
