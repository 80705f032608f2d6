"""Judging a header by only the fields the decision reads (``BODY.PEEK[HEADER.FIELDS (...)]``)
against judging the whole header section, on a real Dovecot, over the hostile corpus
(tests/hostile/corpus.py) and shapes aimed at the difference between the two: folded, encoded,
repeated, 8-bit, hidden behind a bare CR or a line that is no field, or missing sender
fields."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from imapclient import IMAPClient

from guardmail.channels.imap.batch import Folder, fetch_headers
from guardmail.channels.imap.fetch_reply import read_reply, section
from guardmail.channels.imap.judge import FolderJudge
from guardmail.channels.imap.memo import IMPERSONATION_HEADERS
from guardmail.core.impersonation import OwnNames
from guardmail.core.item import IDENTITY_HEADERS, RECIPIENT_HEADERS
from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from tests.hostile.corpus import FRIEND, OFFENDER, corpus
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=(OFFENDER,), display_names=("Stalker Person",))])
OWN = OwnNames.build(["alice@own.example"], [], "mx.own.example", ["own.example"])
AR = b"Authentication-Results: mx.own.example; spf=fail smtp.mailfrom=x.example; dkim=none"


def shapes(a: bytes) -> dict[str, bytes]:
    """Shapes that differ between a whole header section and its fields as the server cuts
    them out, each with the sender ``a``."""
    return {
        "folded-from": b"Subject: s\r\nFrom: Someone\r\n <" + a + b">\r\n\r\nb",
        "folded-tab-after-other": b"X-A: 1\r\n\tFrom: " + a + b"\r\nFrom: f@x.example\r\n\r\nb",
        "encoded-display": b"From: =?utf-8?b?"
        + __import__("base64").b64encode(b"Stalker Person <" + a + b">")
        + b"?= <nobody@x.example>\r\n\r\nb",
        "encoded-whole-value": b"From: =?utf-8?q?" + a.replace(b"@", b"=40") + b"?=\r\n\r\nb",
        "two-froms": b"From: f@x.example\r\nSubject: s\r\nFrom: " + a + b"\r\n\r\nb",
        "reply-to-only": b"From: f@x.example\r\nReply-To: " + a + b"\r\n\r\nb",
        "resent-and-return-path": b"Return-Path: <"
        + a
        + b">\r\nResent-Sender: r@x.example\r\n\r\nb",
        "upper-and-mixed-case": b"FROM: f@x.example\r\nsEnDeR: " + a + b"\r\n\r\nb",
        "space-before-colon": b"From : " + a + b"\r\n\r\nb",
        "tab-before-colon": b"Sender\t: " + a + b"\r\nFrom: f@x.example\r\n\r\nb",
        "8bit-display": b"From: St\xc3\xa4lker \xff <" + a + b">\r\n\r\nb",
        "nul-in-from": b"From: \x00" + a + b"\r\n\r\nb",
        "no-sender-field": b"Subject: nobody\r\nTo: alice@own.example\r\n\r\nb",
        "junk-line-then-continuation": b"From: f@x.example\r\njunk line\r\n " + a + b"\r\n\r\nb",
        "junk-line-then-angle-address": b"From: Friend\r\njunk\r\n <" + a + b">\r\n\r\nb",
        "bad-name-then-continuation": b"From: f@x.example\r\nX y: z\r\n <" + a + b">\r\n\r\nb",
        "junk-line-before-from": b"no colon here\r\nFrom: " + a + b"\r\n\r\nb",
        "bare-cr-hides-from": b"X-A: 1\rFrom: " + a + b"\r\nSubject: s\r\n\r\nb",
        "bare-lf-lines": b"X-A: 1\nFrom: " + a + b"\nSubject: s\n\nb",
        "lf-cr-mix": b"X-A: 1\n\rFrom: " + a + b"\r\n\r\nb",
        "empty-from": b"From:\r\nSender: " + a + b"\r\n\r\nb",
        "colon-in-name": b"X-From: " + a + b"\r\nFrom: f@x.example\r\n\r\nb",
        "impersonation": b"From: alice@own.example\r\n" + AR + b"\r\n\r\nb",
        "impersonation-folded-ar": b"From: alice@own.example\r\nAuthentication-Results:"
        b" mx.own.example;\r\n spf=fail smtp.mailfrom=x.example\r\n\r\nb",
        "report": b"From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report;"
        b" report-type=delivery-status; boundary=b\r\nAuto-Submitted: auto-replied\r\n\r\nb",
    }


def messages() -> list[tuple[str, bytes]]:
    out = [(m.name, m.raw) for m in corpus() if m.raw]
    for who, addr in (("offender", OFFENDER), ("clean", FRIEND)):
        out += [(f"{name}-{who}", raw) for name, raw in shapes(addr.encode()).items()]
    return out


@pytest.fixture(scope="module")
def folder() -> Iterator[tuple[list[str], dict[int, tuple[bytes, int]], IMAPClient]]:
    server: Dovecot = start_dovecot({"alice": "secret"})
    c: IMAPClient | None = None
    try:
        named = messages()
        conn = server.imap("alice")
        try:
            for _, raw in named:
                assert conn.append("INBOX", None, None, raw)[0] == "OK"
        finally:
            conn.logout()
        c = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=60)
        c.login("alice", "secret")
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search("ALL"))
        assert len(uids) == len(named)
        yield [name for name, _ in named], fetch_headers(c, uids), c
    finally:
        if c is not None:
            c.logout()
        server.stop()


def judge_of(*, own: OwnNames | None, outgoing: bool = False) -> FolderJudge:
    vault: Any = None  # never reached: only the header judgment runs
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW, own=own)
    actions: Any = None
    return FolderJudge(
        pipeline=pipeline, actions=actions, account="a", folder="INBOX", outgoing=outgoing
    )


WHERE = Folder(tenant="t", account="a", folder="INBOX", uidvalidity=1)
# Where Dovecot's fields and core's reading of the whole section part: a line that is no field
# (no colon, or a name with a blank) followed by a continuation line. Dovecot takes the line
# for a field of its own and the continuation for its; core (core/headers.py) skips the line
# and joins the continuation to the field before it, a sender field here, so its address is
# found in the whole section and not in the fields.
DIVERGE = {"junk-line-then-angle-address-offender", "bad-name-then-continuation-offender"}


@pytest.mark.parametrize(
    ("own", "outgoing", "fields"),
    [
        (None, False, IDENTITY_HEADERS),
        (OWN, False, IDENTITY_HEADERS + IMPERSONATION_HEADERS),
        (None, True, RECIPIENT_HEADERS),
    ],
    ids=["senders", "senders-and-impersonation", "sent-folder-recipients"],
)
def test_fields_alone_decide_as_whole_sections_but_where_a_line_is_no_field(
    folder: tuple[list[str], dict[int, tuple[bytes, int]], IMAPClient],
    own: OwnNames | None,
    outgoing: bool,
    fields: tuple[str, ...],
) -> None:
    """Why the scan fetches whole header sections (memo.py): the fields alone would pass an
    offender's message core blocks. Everywhere else (folded, encoded, repeated, 8-bit, bare CR
    or LF, missing fields) the two decide alike; the fast reader reads Dovecot's fields reply."""
    names, whole, c = folder
    got = fetch_headers(c, sorted(whole), fields)
    assert {u: s for u, (_, s) in got.items()} == {u: s for u, (_, s) in whole.items()}
    judge = judge_of(own=own, outgoing=outgoing)
    named = dict(zip(sorted(whole), names, strict=True))
    differ = {
        named[u]
        for u in sorted(whole)
        if judge.whole(WHERE, u, got[u][0], NOW) != judge.whole(WHERE, u, whole[u][0], NOW)
    }
    assert differ == (set() if outgoing else DIVERGE)
    blocked = {named[u] for u in whole if judge.whole(WHERE, u, whole[u][0], NOW)}
    assert DIVERGE <= blocked or outgoing  # core finds the offender in the whole section
    _, data = c._imap.uid("FETCH", "1:*", f"({section(fields)} RFC822.SIZE)")
    assert read_reply(data) is not None  # Dovecot's framing is the fast reader's
