"""A corpus of hostile mail: every shape a sender can give the bytes that once stopped a parser.

Each ``Hostile`` is one message file. ``offender`` says whether it comes from ``OFFENDER`` (the
address every test configuration lists): such an item must be archived byte for byte and acted
on; the others come from ``FRIEND`` (or from nobody) and must be passed on untouched. The same
shape is generated for both senders, so a hostile shape can neither hide an offender nor make
clean mail look like one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

OFFENDER = "stalker@example.net"
FRIEND = "friend@innocent.example"
MB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Hostile:
    name: str
    raw: bytes
    offender: bool


def _mail(from_line: bytes, *headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    return b"\r\n".join([from_line, *headers]) + b"\r\n\r\n" + body


def _deep_mime(depth: int) -> bytes:
    head = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    opening = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1)
        for n in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth + 1)))
    return head + opening + b"--b%d\r\nContent-Type: text/plain\r\n\r\nx" % depth + closing


# name -> the message from ``addr`` (bytes). Each shape names what it attacks.
SHAPES: dict[str, Callable[[bytes], bytes]] = {
    # Encoded words (RFC 2047) of every broken kind, in Subject and in the From display name.
    "subject-bad-base64": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?b?!!!notbase64?="),
    "subject-bad-base64-padding": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?b?YWJj=?="),
    "subject-bad-qp": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?q?=ZZ=G=?="),
    "subject-unknown-charset": lambda a: _mail(
        b"From: " + a, b"Subject: =?x-no-such-charset?q?abc?="
    ),
    "subject-bad-charset-name": lambda a: _mail(b"From: " + a, b"Subject: =?\xff\x00?q?abc?="),
    "subject-truncated-word": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?b?YWJj"),
    "subject-only-opener": lambda a: _mail(b"From: " + a, b"Subject: =?"),
    "subject-invalid-utf8-in-word": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?b?/w==?="),
    "subject-unknown-encoding": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?x?abc?="),
    "subject-many-words": lambda a: _mail(b"From: " + a, b"Subject: " + b"=?utf-8?q?a?= " * 50000),
    "name-bad-base64": lambda a: _mail(b"From: =?utf-8?b?!!!?= <" + a + b">"),
    "name-unknown-charset": lambda a: _mail(b"From: =?x-nope?q?Bob?= <" + a + b">"),
    "name-truncated-word": lambda a: _mail(b'From: "=?utf-8?q?Bo" <' + a + b">"),
    # Deep nesting the recursive address parser cannot follow.
    "from-deep-comments": lambda a: _mail(b"From: " + b"(" * 1500 + b")" * 1500 + b" " + a),
    "from-deep-comments-unclosed": lambda a: _mail(b"From: " + a + b" " + b"(" * 1200),
    "from-deep-groups": lambda a: _mail(b"From: " + b"g:" * 2000 + a + b";" * 2000),
    "sender-deep-comments": lambda a: _mail(
        b"From: nobody", b"Sender: " + b"(" * 100000 + b" " + a
    ),
    "from-many-angles": lambda a: _mail(b"From: " + b"<" * 200000 + a),
    "from-many-headers": lambda a: _mail(
        b"From: " + a, *[b"From: x%d@y.example" % n for n in range(20000)]
    ),
    "deep-mime": lambda a: _mail(b"From: " + a, body=_deep_mime(3000)),
    # Sizes (within the header scan limit): a header line of almost 1 MB before the sender, a
    # sender line of almost 1 MB, a Subject of 1 MB.
    "header-line-1mb": lambda a: _mail(b"X-Long: " + b"a" * (MB - 4096), b"From: " + a),
    "from-line-1mb": lambda a: _mail(b"From: " + b"x" * (MB - 4096) + b" <" + a + b">"),
    "subject-1mb": lambda a: _mail(b"From: " + a, b"Subject: =?utf-8?q?" + b"=C3=BC" * (MB // 6)),
    # Bytes that are not text.
    "nul-bytes": lambda a: _mail(
        b"From: \x00" + a + b"\x00", b"Subject: \x00\x00", body=b"\x00" * 64
    ),
    "invalid-utf8": lambda a: _mail(b"From: \xff\xfe\xc3( <" + a + b">", b"Subject: \xed\xa0\x80"),
    "invalid-utf8-in-address": lambda a: _mail(b"From: \x80" + a.replace(b"@", b"\xff@") + b"\xc3"),
    # Line endings: bare CR, bare LF, none at all.
    "bare-cr": lambda a: b"Subject: cr only\rFrom: " + a + b"\r\rbody\r",
    "bare-lf": lambda a: b"Subject: lf only\nFrom: " + a + b"\n\nbody\n",
    "no-separator": lambda a: b"Subject: no body\r\nFrom: " + a + b"\r\n",
    "no-newline-at-all": lambda a: b"From: " + a,
}


def corpus(*, offender: str = OFFENDER, friend: str = FRIEND) -> list[Hostile]:
    """Every shape from ``offender`` and from ``friend``, plus the empty file (from nobody)."""
    items = [Hostile(name="empty-file", raw=b"", offender=False)]
    for name, make in SHAPES.items():
        items.append(Hostile(name=f"{name}-offender", raw=make(offender.encode()), offender=True))
        items.append(Hostile(name=f"{name}-clean", raw=make(friend.encode()), offender=False))
    return items
