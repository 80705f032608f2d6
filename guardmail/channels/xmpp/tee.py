"""Byte-exact stanza slicing of an XMPP stream: the evidence is the bytes the socket delivered.

slixmpp offers only re-serialised stanzas (``str(stanza)`` changes quotes, attribute order,
namespace declarations and character references). A ``StanzaSlicer`` is fed the bytes the socket
delivered, in the same chunks, and cuts the stream where each top-level element (a stanza)
starts and ends. The watcher then builds each stanza's element from exactly those bytes
(``elements.py``), so what is judged and what is archived cannot differ.

Contracts:
- ``feed`` returns, in stream order, one ``Slice`` per top-level element completed by the bytes
  fed so far; ``Slice.raw`` is exactly the bytes from its ``<`` to the ``>`` that closes it, however
  the stream was split into chunks (multibyte UTF-8 characters may be split too).
- The stream header (XML declaration, if any, through the end of the ``<stream:stream ...>`` start
  tag) is kept in ``header``: a stanza's default namespace and prefixes are declared there, so
  the header goes with the stanza into the evidence. ``ended`` turns true at the stream's end tag.
- Whitespace (and any other text) between stanzas belongs to no slice.
- One slicer reads one stream: make a new one whenever the stream restarts (after STARTTLS and
  after SASL).
- A tokenizer, not a parser: it finds tags, comments, CDATA sections and processing instructions
  and checks that each end tag closes the element open; whether a stanza is well-formed XML (its
  characters, references, attributes, prefixes) is decided when its element is built from the
  slice (``elements.py``), which accepts a slice only if it is exactly one whole element, so a
  slice cut wrongly from malformed input is never taken for a stanza. It refuses what XMPP
  forbids and a parser would make expensive or ambiguous: a DOCTYPE (RFC 6120 11.1; entity
  declarations), and a stream declared in another encoding than UTF-8 (11.6). On such input, an
  end tag that closes another element than the one open, or a stanza's name with an undeclared
  prefix, ``feed`` raises ``SliceError`` (carrying the stanzas completed before the bad bytes)
  and the slicer stays broken.
- Bounded work: text is skipped with one ``find``; a token is matched by one regular expression
  without nested ambiguity. A token still incomplete at the end of the input is looked at again
  only when new bytes bring a ``>``, which ends every token; then only the bytes not yet searched
  are searched for the token's end (``-->``, ``]]>``, ``?>``, or a ``>`` outside quotes), and the
  expression is matched again only once that end has come: each byte of a token sent in many
  reads is looked at a bounded number of times, not once per read.
- Memory: only the bytes of the stanza in progress (and the header) and the names of its open
  elements; no per-stream parser (~15 KB each with expat). A stanza, or a token between stanzas,
  longer than ``STANZA_LIMIT`` is refused (``SliceError``) as soon as that many of its bytes are
  held, however they were chunked; so is a ``<`` that can start no markup (``< x``, ``<"``), which
  would otherwise hold every later byte waiting for a token that cannot end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from guardmail.errors import PeerError

# One markup token from its "<" to its ">": a comment (group 1), a CDATA section (2), a processing
# instruction (3), another declaration such as a DOCTYPE (4), an end tag (5), a start tag (its
# name 6, attributes 7, and 8: "/" if empty). Quoted attribute values may hold ">" and "/". The
# attributes' repetition is possessive over disjoint units, so a failed match (an incomplete
# token) costs one pass. Attributes are not checked here: expat does, when the element is built.
_TOKEN = re.compile(
    rb"<(?:(!--.*?--)|(!\[CDATA\[.*?\]\])|(\?.*?\?)|(!(?!--|\[CDATA\[)[^>]*)|(/[^>]*)"
    rb"|([^>\"'!?/\s][^>\"'/\s]*)((?:[^>\"'/]+|/(?!>)|\"[^\"]*\"|'[^']*')*+)(/?))>",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(rb"([^\s=/>\"'<]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_ENCODING = re.compile(rb"\sencoding\s*=\s*[\"']([^\"']*)[\"']")
_HEADER_LIMIT = 64 * 1024  # an XML declaration and a stream start tag fit in far less
# The largest stanza read. Prosody refuses larger ones from its clients at 256 KiB
# (c2s_stanza_size_limit), from federated servers at 512 KiB (s2s_stanza_size_limit), and its
# stream parser's default is 1 MiB: 16 MiB leaves room for an operator who raised those (and for
# the <forwarded/> wrapping of an archived one) while bounding what one stream can make us hold.
STANZA_LIMIT = 16 * 1024 * 1024
# Where a token that did not match yet may end: the terminator of a comment, a CDATA section and
# a processing instruction; for a tag, its next quote or ">" (a ">" outside quotes ends it).
_COMMENT_END = re.compile(rb"-->")
_CDATA_END = re.compile(rb"\]\]>")
_PI_END = re.compile(rb"\?>")
_GT = re.compile(rb">")
_TAG_STOP = re.compile(rb"[>\"']")
_QUOTE_END = {b'"': re.compile(rb'"'), b"'": re.compile(rb"'")}
# After "<", what can start no token at all (a tag name cannot start with a quote or a space).
_NO_TOKEN = frozenset(b">\"' \t\r\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class Slice:
    """One top-level element of the stream, as received.

    ``offset`` is the byte offset of its first byte from the start of this stream (the first byte
    after the last stream restart); ``tag`` is in ElementTree form, ``{namespace}name``.
    """

    raw: bytes
    offset: int
    tag: str


class SliceError(PeerError):
    """The stream is not well-formed XML, or not XML an XMPP server may send. ``slices`` are the
    stanzas the same ``feed`` completed before the bad bytes."""

    slices: tuple[Slice, ...] = ()


def _declarations(attributes: bytes) -> dict[bytes, str]:
    """Namespace declarations among a start tag's attributes: prefix (b"" for the default
    namespace) to namespace. References in the value are rare enough to be left as written: a
    tag resolved wrongly is caught when the element is built, and the stream is left."""
    found: dict[bytes, str] = {}
    for m in _ATTRIBUTE.finditer(attributes):
        name = m.group(1)
        if name == b"xmlns" or name.startswith(b"xmlns:"):
            value = m.group(2) if m.group(2) is not None else m.group(3)
            found[name[6:]] = value.decode("utf-8", "replace")
    return found


class StanzaSlicer:
    """Cuts one XMPP stream into top-level element byte slices. Pure: no I/O."""

    __slots__ = (
        "_buf",
        "_base",
        "_pos",
        "_open",
        "_attributes",
        "_start",
        "_searched",
        "_quote",
        "_root",
        "_namespaces",
        "_broken",
        "header",
        "ended",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0]
        self._pos = 0  # stream offset of the next byte to tokenize
        self._open: list[bytes] = []  # names of the open elements of the stanza in progress
        self._attributes = b""  # the attributes of the stanza in progress, for its tag
        self._start = 0  # stream offset of the stanza in progress
        # While a token is incomplete (it starts at self._pos): the stream offset its end was
        # searched up to (else -1), and the quote open there (a tag's quoted value) or b"".
        self._searched = -1
        self._quote = b""
        self._root = b""
        self._namespaces: dict[bytes, str] = {}
        self._broken = False
        self.header: bytes | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[Slice]:
        """Take the next bytes of the stream; return the top-level elements they complete."""
        if self._broken:
            raise SliceError("the stream was not well-formed earlier; start a new slicer")
        if self.ended:
            return []  # nothing may follow the stream's end; the connection is being closed
        self._buf += data
        done: list[Slice] = []
        try:
            self._scan(done)
            self._compact()
        except SliceError as exc:
            self._broken = True
            exc.slices = tuple(done)
            raise
        return done

    def _compact(self) -> None:
        # Before the header, all of it is the header's; between stanzas nothing before the scan
        # position is needed again; inside one, nothing before its start.
        if self.header is None:
            if len(self._buf) > _HEADER_LIMIT:
                raise SliceError(f"no stream header in the first {_HEADER_LIMIT} bytes")
            return
        keep = self._start if self._open else self._pos
        drop = keep - self._base
        if drop > 0:
            del self._buf[:drop]
            self._base = keep
        if len(self._buf) > STANZA_LIMIT:
            # What is held is the stanza in progress (or a token between stanzas): it will be
            # longer than the limit whatever comes next.
            raise SliceError(
                f"refused: a stanza of more than {STANZA_LIMIT} bytes "
                f"(at stream offset {self._base}); the stream is left"
            )

    def _scan(self, done: list[Slice]) -> None:
        buf, base = self._buf, self._base
        # The token seen incomplete before (at self._pos) is matched again only once its end
        # may have come; then it is matched as any other.
        if self._searched >= 0:
            if not self._may_end(buf, self._pos - base):
                return
            self._searched = -1
        while not self.ended:
            # Text (inside a stanza, or whitespace between stanzas) runs to the next "<".
            i = buf.find(b"<", self._pos - base)
            if i < 0:
                self._pos = base + len(buf)
                return
            self._pos = base + i
            m = _TOKEN.match(buf, i)
            if m is None:
                if i + 1 < len(buf) and buf[i + 1] in _NO_TOKEN:
                    raise SliceError(f"not well-formed XML: {buf[i : i + 2].decode('latin-1')!r}")
                # Incomplete (a short one still undecided is searched again from its start).
                self._searched, self._quote = base + i, b""
                return
            end = m.end()
            if end - i > STANZA_LIMIT:
                raise SliceError(f"refused: a token of more than {STANZA_LIMIT} bytes")
            self._pos = base + end
            kind = m.lastindex
            if kind == 8:
                self._start_element(m, base + i, done)
            elif kind == 5:
                self._end_element(m, done)
            elif kind == 4:
                raise SliceError(
                    "refused: a DOCTYPE or declaration (XMPP forbids them, RFC 6120 11.1)"
                )
            elif kind == 2 and not self._open:
                raise SliceError("not well-formed XML: a CDATA section outside any stanza")
            elif kind == 3 and self.header is None:
                self._check_declaration(m.group(3))

    def _may_end(self, buf: bytearray, i: int) -> bool:
        """Whether the token at ``i``, incomplete when last matched, may be complete now. Only the
        bytes after those searched before are searched (a few bytes back, for a terminator split
        between reads), so a token sent in many reads costs one pass, not one per read."""
        base, kind = self._base, buf[i + 1 : i + 9]
        if not kind or kind[0] in _NO_TOKEN:
            return True  # the expression decides: no token, or not one at all (SliceError)
        if kind.startswith(b"!--"):
            end, first = _COMMENT_END, i + 4
        elif kind.startswith(b"![CDATA["):
            end, first = _CDATA_END, i + 9
        elif kind.startswith(b"?"):
            end, first = _PI_END, i + 2
        elif kind.startswith(b"!") and len(kind) < 8:
            return True  # may still become a comment or CDATA: a few bytes, matched again
        elif kind.startswith((b"!", b"/")):
            end, first = _GT, i + 2  # a declaration or an end tag ends at its first ">"
        else:
            return self._tag_may_end(buf, i)
        at = end.search(buf, max(first, self._searched - base - 2))
        if at is None:
            self._searched = base + len(buf)
            return False
        return True

    def _tag_may_end(self, buf: bytearray, i: int) -> bool:
        # A start tag ends at its first ">" outside a quoted value; the quote open where the last
        # search stopped is remembered.
        base, quote = self._base, self._quote
        pos = max(i + 1, self._searched - base)
        while True:
            if quote:
                m = _QUOTE_END[quote].search(buf, pos)
                if m is None:
                    break
                quote, pos = b"", m.end()
                continue
            m = _TAG_STOP.search(buf, pos)
            if m is None:
                break
            if m.group() == b">":
                return True
            quote, pos = m.group(), m.end()
        self._searched, self._quote = base + len(buf), quote
        return False

    @staticmethod
    def _check_declaration(instruction: bytes) -> None:
        if not instruction.startswith(b"?xml"):
            return
        m = _ENCODING.search(instruction)
        if m is not None and m.group(1).lower() not in (b"utf-8", b"utf8"):
            declared = m.group(1).decode("ascii", "replace")
            raise SliceError(
                f"refused: the stream is declared {declared!r}, XMPP is UTF-8 (RFC 6120 11.6)"
            )

    def _start_element(self, m: re.Match[bytes], at: int, done: list[Slice]) -> None:
        name, empty = m.group(6), m.group(8) == b"/"
        if self.header is None:
            if empty:
                raise SliceError("not well-formed XML: the stream's root element is empty")
            self.header = bytes(self._buf[: m.end() - self._base])
            self._root = name
            attributes = m.group(7)
            self._namespaces = _declarations(attributes) if b"xmlns" in attributes else {}
            return
        if not self._open:
            self._start = at
            self._attributes = m.group(7)
            if empty:
                self._emit(name, self._base + m.end(), done)
                return
        if not empty:
            self._open.append(name)

    def _end_element(self, m: re.Match[bytes], done: list[Slice]) -> None:
        name = m.group(5)[1:].rstrip()
        if not self._open:
            if name != self._root:
                raise SliceError(f"not well-formed XML: {name!r} closes the stream {self._root!r}")
            self.ended = True
            return
        if name != self._open[-1]:
            raise SliceError(f"not well-formed XML: {name!r} closes {self._open[-1]!r}"[:200])
        self._open.pop()
        if not self._open:
            self._emit(name, self._base + m.end(), done)

    def _emit(self, name: bytes, end: int, done: list[Slice]) -> None:
        if end - self._start > STANZA_LIMIT:  # whether it came in one read or many
            raise SliceError(f"refused: a stanza of more than {STANZA_LIMIT} bytes")
        raw = bytes(self._buf[self._start - self._base : end - self._base])
        attributes, self._attributes = self._attributes, b""
        done.append(Slice(raw=raw, offset=self._start, tag=self._tag(name, attributes)))

    def _tag(self, name: bytes, attributes: bytes) -> str:
        prefix, sep, local = name.rpartition(b":")
        if not sep:
            prefix, local = b"", name
        own = _declarations(attributes) if b"xmlns" in attributes else {}
        ns = own.get(prefix, self._namespaces.get(prefix))
        text = local.decode("utf-8", "replace")
        if ns is None:
            if prefix:
                raise SliceError(f"not well-formed XML: unbound prefix in {name!r}"[:200])
            return text
        return f"{{{ns}}}{text}" if ns else text


def slice_stream(chunks: Iterator[bytes] | list[bytes]) -> tuple[bytes | None, list[Slice]]:
    """Header and slices of a whole stream given as chunks (for tests and tools)."""
    slicer = StanzaSlicer()
    out: list[Slice] = []
    for chunk in chunks:
        out += slicer.feed(chunk)
    return slicer.header, out
