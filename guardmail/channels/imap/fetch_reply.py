"""Reading the header FETCH reply of a scan: one known shape read by a regex, anything else by
imapclient's own parser.

A first scan reads every message's header section (``UID FETCH ... (BODY.PEEK[HEADER]
RFC822.SIZE)``); imapclient's generic lexer, token by token in Python, cost about as much CPU
as imaplib's reading of the reply itself (~25 us a message, ~0.5 s of a 20,000-message scan).

Contracts:
- ``fetch_headers_reply`` sends the same command imapclient's ``fetch`` sends and returns what
  it would return (the same dict for the same reply; tests/unit/test_imap_fetch_reply.py
  compares them on random and hostile replies): UID -> ``{b"SEQ", b"RFC822.SIZE",
  b"BODY[HEADER]"}``, only for UIDs asked for.
- The fast reader takes a reply only if every one of its responses is exactly ``SEQ (UID n
  RFC822.SIZE n BODY[HEADER] {n}`` + literal + ``)`` (the three in any order; what Dovecot,
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

# A number as imapclient reads it into an int (no leading zero: it keeps "0123" as bytes).
_NUM = rb"(?:0|[1-9][0-9]{0,18})"
# One response's text before its literal, and the text after it.
_HEAD = re.compile(
    rb"(" + _NUM + rb") \((?:(UID|RFC822\.SIZE) (" + _NUM + rb") )?"
    rb"(?:(UID|RFC822\.SIZE) (" + _NUM + rb") )?BODY\[HEADER\] \{(" + _NUM + rb")\}"
)
_TAIL = re.compile(
    rb"(?: (UID|RFC822\.SIZE) (" + _NUM + rb"))?(?: (UID|RFC822\.SIZE) (" + _NUM + rb"))?\)"
)

Reply = dict[int, dict[bytes, Any]]


def fetch_headers_reply(client: IMAPClient, uids: list[int]) -> Reply:
    """``client.fetch(uids, ["BODY.PEEK[HEADER]", "RFC822.SIZE"])``, read faster."""
    return read_headers_reply(client, send_headers_fetch(client, uids), uids)


def send_headers_fetch(client: IMAPClient, uids: list[int]) -> Any:
    """Send the header FETCH of ``uids`` and return its tag (None if nothing was sent) for
    ``read_headers_reply``; until then the connection may send nothing else."""
    if not uids or not isinstance(client, IMAPClient):  # a test double answers fetch() itself
        return None
    return client._imap._command("UID", "FETCH", ",".join(map(str, uids)), ITEMS)


def read_headers_reply(client: IMAPClient, tag: Any, uids: list[int]) -> Reply:
    """The reply to ``send_headers_fetch(client, uids)`` (which gave ``tag``)."""
    if not uids:
        return {}
    if tag is None:
        reply: Reply = client.fetch(uids, ["BODY.PEEK[HEADER]", "RFC822.SIZE"])
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
        if got is None or after is None or int(got[6]) != len(literal):
            return None
        pairs = [(got[2], got[3]), (got[4], got[5]), (after[1], after[2]), (after[3], after[4])]
        named = [(name, int(value)) for name, value in pairs if name is not None]
        values = dict(named)
        if len(named) != 2 or len(values) != 2:
            return None  # each of UID and RFC822.SIZE exactly once
        uid = values[b"UID"]
        if uid in out:
            return None  # imapclient merges repeats: leave that to it
        out[uid] = {b"SEQ": int(got[1]), SIZE: values[SIZE], HEADER: literal}
    return out
