"""Reading the header FETCH reply of a scan: one known shape read by a regex, anything else by
imapclient's own parser.

A first scan reads every message's header section (``UID FETCH ... (BODY.PEEK[HEADER]
RFC822.SIZE)``); named fields (``BODY.PEEK[HEADER.FIELDS (...)]``) are read alike, though the
scan does not judge by them (tests/integration/test_imap_fields.py says why). imapclient's
generic lexer, token by token in Python, cost about as much CPU as imaplib's reading of the
reply itself (~25 us a message, ~0.5 s of a 20,000-message scan).

Contracts:
- ``fetch_headers_reply`` sends the same command imapclient's ``fetch`` sends and returns what
  it would return (the same dict for the same reply; tests/unit/test_imap_fetch_reply.py
  compares them on random and hostile replies): UID -> ``{b"SEQ", b"RFC822.SIZE", section}``,
  only for UIDs asked for, where ``section`` is the server's name of the header part
  (``b"BODY[HEADER]"``, or ``b"BODY[HEADER.FIELDS (FROM ...)]"`` as the server spells it);
  ``header_of`` finds it in an entry.
- The fast reader takes a reply only if every one of its responses is exactly ``SEQ (UID n
  RFC822.SIZE n section {n}`` + literal + ``)`` (the three in any order; what Dovecot,
  Cyrus and Gmail send). Anything else (an unsolicited FETCH of flags, NIL, another order of
  framing, a server's extra item) is read whole by imapclient's parser, as before.
- The header bytes are never looked into here: imaplib cut the literal out by its announced
  length, so what the sender wrote in the header cannot change how the reply is framed
  (invariant 6), and the bytes are imaplib's, unaltered (invariant 2).
"""

from __future__ import annotations

import re
from typing import Any

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

HEADER = b"BODY[HEADER]"
SIZE = b"RFC822.SIZE"
ITEMS = "(BODY.PEEK[HEADER] RFC822.SIZE)"
# Field names are sent as atoms (RFC 3501 header-fld-name): letters, digits and "-" only.
_FIELD_NAME = re.compile(r"[A-Za-z0-9-]+")

# A number as imapclient reads it into an int (no leading zero: it keeps "0123" as bytes).
_NUM = rb"(?:0|[1-9][0-9]{0,18})"
# One response's text before its literal, and the text after it.
_HEAD = re.compile(
    rb"(" + _NUM + rb") \((?:(UID|RFC822\.SIZE) (" + _NUM + rb") )?"
    rb"(?:(UID|RFC822\.SIZE) (" + _NUM + rb") )?(BODY\[HEADER(?:\.FIELDS \([A-Za-z0-9-]+"
    rb"(?: [A-Za-z0-9-]+)*\))?\]) \{(" + _NUM + rb")\}"
)
_TAIL = re.compile(
    rb"(?: (UID|RFC822\.SIZE) (" + _NUM + rb"))?(?: (UID|RFC822\.SIZE) (" + _NUM + rb"))?\)"
)

Reply = dict[int, dict[bytes, Any]]


def section(fields: tuple[str, ...] | None) -> str:
    """The FETCH item of the header part: the whole header section, or only ``fields``."""
    if fields is None:
        return "BODY.PEEK[HEADER]"
    if not fields or not all(_FIELD_NAME.fullmatch(f) for f in fields):
        raise ValueError(f"not a list of header field names: {fields!r}")
    return f"BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})]"


def header_of(entry: dict[bytes, Any]) -> bytes | None:
    """The header part of one UID's reply entry (whole section or fields), None if absent."""
    got = entry.get(HEADER)
    if got is not None:
        return got if isinstance(got, bytes) else b""
    for key, value in entry.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[HEADER"):
            # NIL or "" for a message with none of the fields: no field to read.
            return value if isinstance(value, bytes) else b""
    return None


def fetch_headers_reply(
    client: IMAPClient, uids: list[int], fields: tuple[str, ...] | None = None
) -> Reply:
    """``client.fetch(uids, [section(fields), "RFC822.SIZE"])``, read faster."""
    return read_headers_reply(client, send_headers_fetch(client, uids, fields), uids, fields)


def send_headers_fetch(
    client: IMAPClient, uids: list[int], fields: tuple[str, ...] | None = None
) -> Any:
    """Send the header FETCH of ``uids`` (the whole section, or ``fields``) and return its tag
    (None if nothing was sent) for ``read_headers_reply``; until then the connection may send
    nothing else."""
    if not uids or not isinstance(client, IMAPClient):  # a test double answers fetch() itself
        return None
    items = f"({section(fields)} RFC822.SIZE)"
    return client._imap._command("UID", "FETCH", ",".join(map(str, uids)), items)


def read_headers_reply(
    client: IMAPClient, tag: Any, uids: list[int], fields: tuple[str, ...] | None = None
) -> Reply:
    """The reply to ``send_headers_fetch(client, uids, fields)`` (which gave ``tag``)."""
    if not uids:
        return {}
    if tag is None:
        reply: Reply = client.fetch(uids, [section(fields), "RFC822.SIZE"])
        return reply
    imap = client._imap
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    response = read_reply(data)
    if response is None:
        response = parse_fetch_response(data, client.normalise_times, True)
    return {u: response[u] for u in uids if u in response}


def read_reply(data: list[Any]) -> Reply | None:
    """The reply of ``data`` (imaplib's untagged FETCH data) if every response in it has the
    one expected shape, else None (read it with imapclient's parser)."""
    if len(data) % 2:
        return None
    out: Reply = {}
    for k in range(0, len(data), 2):
        first, tail = data[k], data[k + 1]
        if not (isinstance(first, tuple) and len(first) == 2 and isinstance(tail, bytes)):
            return None
        head, literal = first
        if not (isinstance(head, bytes) and isinstance(literal, bytes)):
            return None
        got = _HEAD.fullmatch(head)
        after = _TAIL.fullmatch(tail)
        if got is None or after is None or int(got[7]) != len(literal):
            return None
        pairs = [(got[2], got[3]), (got[4], got[5]), (after[1], after[2]), (after[3], after[4])]
        named = [(name, int(value)) for name, value in pairs if name is not None]
        values = dict(named)
        if len(named) != 2 or len(values) != 2:
            return None  # each of UID and RFC822.SIZE exactly once
        uid = values[b"UID"]
        if uid in out:
            return None  # imapclient merges repeats: leave that to it
        # imapclient upper-cases the item's name, field names included (ASCII only here).
        out[uid] = {b"SEQ": int(got[1]), SIZE: values[SIZE], got[6].upper(): literal}
    return out
