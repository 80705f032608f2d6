"""The header section of a raw message: where it ends, and its unfolded fields.

Contracts:
- Reading is total: no byte sequence raises. Lines end at CRLF, LF or a bare CR; a message with
  no header/body separator is all header section (up to the limit); 8-bit and NUL bytes in a
  value are read (decoded as UTF-8 with replacement, NUL removed), never an error.
- The work is bounded: only the first ``HEADER_SCAN_LIMIT`` bytes of a message are looked at.
"""

from __future__ import annotations

import re

# Postfix's header_size_limit is 100 KiB; we read ten times that before giving up on headers.
HEADER_SCAN_LIMIT = 1024 * 1024

# A line ends at CRLF, LF or a bare CR, as in the stdlib's parser and the clients built like
# it: a header after a bare CR is a header to them, so it is one to us.
_EOL = rb"(?:\r\n|\r(?!\n)|\n)"
_HEADER_END = re.compile(_EOL + _EOL)
_LINE_SPLIT = re.compile(_EOL)
# The bytes of a field name: printable ASCII but ":" (RFC 5322 ftext).
_NAME_BYTES = bytes(range(0x21, 0x3A)) + bytes(range(0x3B, 0x7F))


def header_section(raw: bytes) -> bytes:
    """The bytes before the first empty line (all of them, up to the scan limit, if none)."""
    return _header_lines(raw)[0]


def _header_lines(raw: bytes) -> tuple[bytes, list[bytes]]:
    """The header section and its lines (split at CRLF, LF or a bare CR)."""
    window = raw[:HEADER_SCAN_LIMIT]
    # Nearly all mail ends every line with CRLF: then the first CRLF CRLF is the first empty
    # line, and splitting at CRLF is splitting at every line end (bytes methods, ~1 us, where
    # the regexes take ~6: a first scan reads thousands of header sections).
    end = window.find(b"\r\n\r\n")
    if end >= 0:
        head = window[:end]
        crlf = head.count(b"\r\n")
        if head.count(b"\r") == crlf and head.count(b"\n") == crlf:
            return head, head.split(b"\r\n")
    found = _HEADER_END.search(window)
    head = window[: found.start()] if found else window
    return head, _LINE_SPLIT.split(head)


def header_fields(raw: bytes, only: frozenset[bytes] | None = None) -> list[tuple[str, str]]:
    """Unfolded (name, value) pairs of the header section, in order; with ``only`` (lower-case
    names), those fields alone, the others neither decoded nor kept.

    Values are decoded as UTF-8 (RFC 6532) with undecodable bytes replaced and NUL removed, so a
    hostile header cannot make the parse fail. Lines that are neither a field nor a continuation
    are skipped.
    """
    # By hand rather than by a regex a line (a first scan reads thousands of header sections),
    # reading what the regex ``([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)`` read: a name of printable
    # ASCII but ":", blanks, ":"; tests/unit/test_item.py compares the two on random bytes.
    fields: list[tuple[bytes, list[bytes]]] = []
    current: list[bytes] | None = None  # the parts of the field a continuation line extends
    for line in _header_lines(raw)[1]:
        first = line[:1]
        if first == b" " or first == b"\t":
            if current is not None:
                current.append(line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].rstrip(b" \t")
        if not name or name.translate(None, _NAME_BYTES):
            continue
        if only is not None and name.lower() not in only:
            # Decoding is most of the cost: the alias linker reads 5-7 of a message's ~20
            # fields. Its continuation lines are its own, not the field's before it.
            current = None
            continue
        current = [line[colon + 1 :]]
        fields.append((name, current))
    return [
        (
            name.decode("ascii"),
            b"".join(parts).replace(b"\x00", b"").decode("utf-8", "replace").strip(),
        )
        for name, parts in fields
    ]
