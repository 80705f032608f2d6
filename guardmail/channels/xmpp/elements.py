"""Stanza elements built from their exact received bytes by one XML parser per thread.

slixmpp keeps an expat pull parser per connection (~25 KB each, most of what an idle watched
account costs in Python objects). The watcher's slicer (``tee.py``) already cuts each stanza's
bytes out of the stream, so the element is built from those bytes by a parser shared by every
connection of the thread, fed one whole stanza at a time: nothing of one stream is left in it
when the next stream's stanza comes.

Contracts:
- ``build(declarations(header), raw)`` returns the element of the one top-level element ``raw``
  holds, with the namespaces the stream ``header`` declares in scope (a stanza's default
  namespace and prefixes are declared on the stream). Element trees are the ones slixmpp's own
  parser makes (``ElementTree.XMLPullParser``, expat with namespaces).
- Malformed bytes (anything expat refuses, or not exactly one element) raise ``ElementError``;
  the parser involved is dropped, so a bad stanza cannot affect the next one, of any stream.
- A shared parser is replaced after ``RENEW_STANZAS`` stanzas or ``RENEW_BYTES`` bytes (expat
  keeps its largest input buffer and name tables for its whole life), and at once after a
  stanza bigger than ``BIG_STANZA``; at most ``MAX_CONTEXTS`` namespace contexts are kept per
  thread (a stream's server chooses its declarations; one per server in practice).
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from typing import Any, cast

from guardmail.errors import PeerError

RENEW_STANZAS = 20_000
RENEW_BYTES = 32 * 1024 * 1024
BIG_STANZA = 256 * 1024
MAX_CONTEXTS = 8

# Namespace declarations of the stream's start tag, kept as written (their quoting and
# references are then the server's own, and expat reads them as it read the header).
_DECLARATION = re.compile(rb"\sxmlns(?::[^\s=/>\"'<]+)?\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_STREAM_TAG = re.compile(rb"<[^\s/>=\"'<!?]+(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")


class ElementError(PeerError):
    """A stanza's bytes are not one well-formed XML element."""


class _Parser:
    """An XMLPullParser inside an open root element that declares one stream's namespaces."""

    __slots__ = ("_parser", "_root", "stanzas", "size")

    def __init__(self, declarations: bytes) -> None:
        # Any: typeshed's read_events mixes in the queue's internal types
        self._parser: Any = ET.XMLPullParser(("start", "end"))
        self._parser.feed(b"<guardmail-stream" + declarations + b">")
        events: list[Any] = list(self._parser.read_events())
        self._root: ET.Element = events[0][1]
        self.stanzas = 0
        self.size = 0

    def build(self, raw: bytes) -> ET.Element:
        self.stanzas += 1
        self.size += len(raw)
        self._parser.feed(raw)
        depth = 0
        found: ET.Element | None = None
        for kind, element in self._parser.read_events():
            if found is not None:  # a second top-level element in one slice
                raise ElementError("the stanza's bytes hold more than one element")
            if kind == "start":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    found = element
        self._root.clear()
        if found is None or depth != 0:
            raise ElementError("the stanza's bytes do not hold one whole element")
        return found


class _Parsers(threading.local):
    def __init__(self) -> None:
        self.by_declarations: dict[bytes, _Parser] = {}


_parsers = _Parsers()


def declarations(header: bytes) -> bytes:
    """The namespace declarations of a stream header's start tag, as written."""
    at = header.rfind(b"<")
    tag = _STREAM_TAG.match(header, at) if at >= 0 else None
    if tag is None:
        return b""
    return b"".join(m.group(0) for m in _DECLARATION.finditer(header, at, tag.end()))


def stream_root(header: bytes) -> ET.Element:
    """The stream's root element (attributes only) from its header, for slixmpp's
    ``start_stream_handler``; ElementError if expat refuses the header."""
    parser: Any = ET.XMLPullParser(("start",))
    try:
        parser.feed(header)
        for _, element in parser.read_events():
            return cast(ET.Element, element)
    except ET.ParseError as exc:
        raise ElementError(f"the stream header is not well-formed: {exc}") from None
    raise ElementError("the stream header holds no start tag")


def build(declared: bytes, raw: bytes) -> ET.Element:
    """The element of one stanza's exact bytes, in the namespaces its stream declares
    (``declared``, from ``declarations(header)``)."""
    shared = _parsers.by_declarations
    parser = shared.get(declared)
    if parser is None:
        if len(shared) >= MAX_CONTEXTS:
            shared.pop(next(iter(shared)))
        try:
            parser = shared[declared] = _Parser(declared)
        except ET.ParseError as exc:
            raise ElementError(f"the stream's namespaces are not valid: {exc}") from None
    try:
        element = parser.build(raw)
    except (ET.ParseError, ElementError) as exc:
        del shared[declared]
        raise ElementError(f"not well-formed XML: {exc}") from None
    if parser.stanzas >= RENEW_STANZAS or parser.size >= RENEW_BYTES or len(raw) >= BIG_STANZA:
        del shared[declared]
    return element
