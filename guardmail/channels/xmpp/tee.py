"""Byte-exact stanza slicing of an XMPP stream: the evidence is the bytes the socket delivered.

slixmpp parses the stream with its own expat parser and offers only re-serialised stanzas
(``str(stanza)`` changes quotes, attribute order, namespace declarations and character
references). A ``StanzaSlicer`` is fed exactly the same bytes, in the same chunks, and cuts the
stream at the byte offsets where each top-level element (a stanza) starts and ends.

Contracts:
- ``feed`` returns, in stream order, one ``Slice`` per top-level element completed by the bytes
  fed so far; ``Slice.raw`` is exactly the bytes from its ``<`` to the ``>`` that closes it, however
  the stream was split into chunks (multibyte UTF-8 characters may be split too).
- The stream header (XML declaration, if any, through the end of the ``<stream:stream ...>`` start
  tag) is kept in ``header``: a stanza's default namespace and prefixes are declared there, so
  the header goes with the stanza into the evidence.
- Whitespace between stanzas (keepalives) belongs to no slice.
- One slicer reads one stream: make a new one whenever the stream restarts (after STARTTLS and
  after SASL), exactly when slixmpp makes a new parser.
- Namespace processing is the same as slixmpp's (expat with ``}`` as separator), so the two
  parsers accept and reject the same input. On malformed input ``feed`` raises ``SliceError``
  and the slicer stays broken (slixmpp closes such a stream too).
- Memory: only the bytes of the stanza in progress (and the header) are kept.

expat reports the *start* of a start tag and the *start* of an end tag; the end of an empty
element (``<x/>``) is reported past the tag, which may be followed by the parent's ``</...>``, so
an end position cannot be told from the end event alone. The end of every top-level start tag is
found by matching it (a start tag expat has accepted) from its first byte, which says whether it
is empty; the end of a non-empty element is the ``>`` after its end tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from xml.parsers import expat

from guardmail.errors import PeerError

# A start tag that expat has already accepted: name, attributes with quoted values (which may
# hold ">" or "/"), optional whitespace, then ">" or "/>". Group 1 is "/" for an empty element.
_START_TAG = re.compile(
    rb"<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>",
)
_NS_SEP = "}"


class SliceError(PeerError):
    """The stream is not well-formed XML (the slicer cannot go on)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Slice:
    """One top-level element of the stream, as received.

    ``offset`` is the byte offset of its first byte from the start of this stream (the first byte
    after the last stream restart); ``tag`` is in ElementTree form, ``{namespace}name``.
    """

    raw: bytes
    offset: int
    tag: str


def _et_tag(name: str) -> str:
    ns, sep, local = name.rpartition(_NS_SEP)
    return f"{{{ns}}}{local}" if sep else local


class StanzaSlicer:
    """Cuts one XMPP stream into top-level element byte slices. Pure: no I/O."""

    __slots__ = (
        "_parser",
        "_buf",
        "_base",
        "_depth",
        "_start",
        "_start_tag_end",
        "_empty",
        "_tag",
        "_done",
        "_broken",
        "header",
    )

    def __init__(self) -> None:
        self._parser = expat.ParserCreate(namespace_separator=_NS_SEP)
        self._parser.StartElementHandler = self._on_start
        self._parser.EndElementHandler = self._on_end
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0]
        self._depth = 0
        self._start = 0  # offset of the top-level element in progress
        self._start_tag_end = 0
        self._empty = False
        self._tag = ""
        self._done: list[Slice] = []
        self._broken = False
        self.header: bytes | None = None

    def feed(self, data: bytes) -> list[Slice]:
        """Take the next bytes of the stream; return the top-level elements they complete."""
        if self._broken:
            raise SliceError("the stream was not well-formed earlier; start a new slicer")
        self._buf += data
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            self._broken = True
            raise SliceError(f"not well-formed XML: {exc}") from None
        done, self._done = self._done, []
        self._compact()
        return done

    def _compact(self) -> None:
        # Between stanzas nothing before the end of the last one is needed again; inside one,
        # nothing before its start.
        keep = self._start if self._depth >= 2 else self._start_tag_end
        drop = keep - self._base
        if drop > 0:
            del self._buf[:drop]
            self._base = keep

    def _tag_end(self, at: int) -> tuple[int, bool]:
        """End offset of the start tag at stream offset ``at``, and whether it is empty."""
        m = _START_TAG.match(self._buf, at - self._base)
        if m is None:  # expat accepted this tag, so the pattern must match it
            raise AssertionError(f"unmatched start tag at stream offset {at}")
        return m.end() + self._base, m.group(1) == b"/"

    def _on_start(self, name: str, _attrs: dict[str, str]) -> None:
        depth = self._depth
        self._depth = depth + 1
        if depth > 1:
            return
        at = self._parser.CurrentByteIndex
        end, empty = self._tag_end(at)
        if depth == 0:
            self.header = bytes(self._buf[: end - self._base])
            self._start_tag_end = end
            return
        self._start, self._start_tag_end, self._empty, self._tag = at, end, empty, name

    def _on_end(self, _name: str) -> None:
        self._depth -= 1
        if self._depth != 1:
            return
        if self._empty:
            end = self._start_tag_end
        else:
            # At the "</" of the end tag, which cannot hold a ">" before its own.
            at = self._parser.CurrentByteIndex - self._base
            end = self._buf.index(b">", at) + 1 + self._base
        raw = bytes(self._buf[self._start - self._base : end - self._base])
        self._done.append(Slice(raw=raw, offset=self._start, tag=_et_tag(self._tag)))
        self._start_tag_end = end
        self._empty = False


def slice_stream(chunks: Iterator[bytes] | list[bytes]) -> tuple[bytes | None, list[Slice]]:
    """Header and slices of a whole stream given as chunks (for tests and tools)."""
    slicer = StanzaSlicer()
    out: list[Slice] = []
    for chunk in chunks:
        out += slicer.feed(chunk)
    return slicer.header, out
