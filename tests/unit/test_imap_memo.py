"""The scan's memo of header judgments (channels/imap/memo.py) decides as judging every header
afresh: over the hostile corpus and look-alike senders, headers that differ only where the
judgment does not read, for INBOX with and without impersonation checks and for a Sent folder;
it starts over on a reload and stays bounded."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from guardmail.channels.imap import memo as memo_mod
from guardmail.channels.imap.batch import Folder
from guardmail.channels.imap.judge import FolderJudge
from guardmail.config.aliases import AliasesConfig
from guardmail.core.impersonation import OwnNames
from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from tests.hostile.corpus import FRIEND, OFFENDER, corpus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RULES = RuleSet(
    [
        OffenderRule(
            name="Ex",
            addresses=(OFFENDER,),
            display_names=("Stalker Person",),
            domains=("evil.example",),
        )
    ]
)
OWN = OwnNames.build(["alice@own.example"], [], "mx.own.example", ["own.example"])
WHERE = Folder(tenant="t", account="a", folder="INBOX", uidvalidity=1)
SENDERS = [
    OFFENDER,
    FRIEND,
    "STALKER@Example.NET",
    "st\u0430lker@example.net",  # Cyrillic a
    "x@evil.example",
    "alice@own.example",
    "MAILER-DAEMON@own.example",
    "",
]
NAMES = ["", "Stalker Person", "=?utf-8?q?Stalker_Person?=", "Friend", f'"{OFFENDER}"']


def judge_of(*, own: OwnNames | None = None, outgoing: bool = False, rules: RuleSet = RULES) -> Any:
    vault: Any = None  # never reached: only the header judgment runs
    actions: Any = None
    pipeline = Pipeline(vault=vault, rules=rules, clock=lambda: NOW, own=own)
    return FolderJudge(
        pipeline=pipeline, actions=actions, account="a", folder="INBOX", outgoing=outgoing
    )


def header(rng: random.Random, n: int) -> bytes:
    """A header whose sender fields repeat across messages and whose other fields differ."""
    name, addr = rng.choice(NAMES), rng.choice(SENDERS)
    lines = [f"Received: from h{n}.example by mx; {n}", f"Message-ID: <{n}@x>"]
    sender = f"{name} <{addr}>" if name else addr
    where = rng.choice(["From", "from", "Reply-To", "Sender", "To", "Cc"])
    lines.insert(rng.randrange(3), f"{where}: {sender}")
    if rng.random() < 0.3:
        lines.append("Authentication-Results: mx.own.example; spf=fail smtp.mailfrom=x; dkim=none")
    if rng.random() < 0.2:
        lines.append("Content-Type: multipart/report; report-type=delivery-status")
    if rng.random() < 0.1:
        lines.append(f"Auto-Submitted: {rng.choice(['no', 'auto-replied'])}")
    raw = "\r\n".join(lines).encode() + b"\r\n\r\n"
    if rng.random() < 0.1:
        raw = raw.replace(b"\r\n", b"\n")
    return raw


def headers() -> dict[int, tuple[bytes, int]]:
    rng = random.Random(28)
    raws = [m.raw[:4096] for m in corpus()] + [header(rng, n) for n in range(3000)]
    o = OFFENDER.encode()
    # Pairs a careless key would confuse: the continuation after a line that is no field joins
    # the field before it; one after a field not read belongs to that field.
    tricky = [
        b"From: Friend\r\njunk\r\n <" + o + b">\r\n\r\n",
        b"From: Friend\r\nX y: z\r\n <" + o + b">\r\n\r\n",
        b"From: Friend\r\nX: 1\r\n <" + o + b">\r\n\r\n",
        b"From: Friend\r\n <" + o + b">\r\n\r\n",
        b"From: Friend\r\n\r\n",
        b"From : Friend\r\nfrom\t: <" + o + b">\r\n\r\n",
        b"X-From: " + o + b"\r\nFrom: Friend\r\n\r\n",
        b"From: Friend\rFrom: " + o + b"\r\n\r\n",
        b"From: Friend\nFrom: " + o + b"\r\n\r\n",
        b"Reply-To: " + o + b"\r\n\r\n",
        b"Subject: none\r\n\r\n",
    ]
    raws += tricky + tricky
    raws += raws[:200]  # the corpus again: its shapes as repeat senders
    return {uid: (raw, len(raw)) for uid, raw in enumerate(raws, start=1)}


HEADERS = headers()


@pytest.mark.parametrize(
    ("own", "outgoing"),
    [(None, False), (OWN, False), (None, True)],
    ids=["senders", "senders-and-impersonation", "sent-folder"],
)
def test_the_memo_decides_as_judging_each_header_afresh(
    own: OwnNames | None, outgoing: bool
) -> None:
    judge = judge_of(own=own, outgoing=outgoing)
    with_memo = judge.offenders(WHERE, HEADERS)
    memo = judge.memo.now()
    assert memo is not None and 0 < len(memo) < len(HEADERS)  # it was used, and hit
    fresh = judge_of(own=own, outgoing=outgoing)
    afresh = [
        (uid, size)
        for uid, (raw, size) in sorted(HEADERS.items())
        if fresh.whole(WHERE, uid, raw, NOW)
    ]
    assert with_memo == afresh
    assert any(uid for uid, _ in afresh)  # the corpus holds offenders: a real comparison
    assert len(afresh) < len(HEADERS)


def test_the_memo_starts_over_when_a_reload_replaces_the_rules() -> None:
    raw = b"From: friend@innocent.example\r\n\r\n"
    judge = judge_of()
    assert judge.offenders(WHERE, {1: (raw, 9)}) == []
    judge.pipeline.rules = RuleSet([OffenderRule(name="F", addresses=("friend@innocent.example",))])
    assert judge.offenders(WHERE, {2: (raw, 9)}) == [(2, 9)]
    judge.pipeline.own = OWN
    assert judge.offenders(WHERE, {3: (raw, 9)}) == [(3, 9)]


def test_no_memo_while_the_alias_linker_reads_whole_headers() -> None:
    judge = judge_of()

    class Linker:
        config = AliasesConfig(enabled=True)

    linker: Any = Linker()
    judge.pipeline.linker = linker
    assert judge.memo.now() is None
    linker.config = AliasesConfig(enabled=False)
    assert judge.memo.now() is not None


def test_the_memo_stays_bounded_whatever_the_senders_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memo_mod, "ENTRIES", 50)
    judge = judge_of()
    many = {n: (f"From: s{n}@innocent.example\r\n\r\n".encode(), 1) for n in range(1, 201)}
    long = b"From: " + b"a" * (memo_mod.KEY_BYTES + 1) + b"@x.example\r\n\r\n"
    many[500] = (long, 1)
    many[501] = (b"From: " + OFFENDER.encode() + b"\r\n\r\n", 7)
    assert judge.offenders(WHERE, many) == [(501, 7)]
    memo = judge.memo.now()
    assert memo is not None and len(memo) <= 50
    assert memo.key(long) is None


def test_a_memo_that_rarely_hits_is_left_alone_for_most_batches() -> None:
    """Every sender distinct (the bench's folder): after its sample the memo is consulted for
    one batch in WORTH, and the decisions do not change."""
    judge = judge_of()
    found = []
    for k in range(20):
        batch = {
            u: (f"From: p{u}@innocent.example\r\n\r\n".encode(), 1)
            for u in range(k * 500 + 1, k * 500 + 501)
        }
        batch[k * 500 + 1] = (f"From: Him {k} <{OFFENDER}>\r\n\r\n".encode(), 1)
        found += judge.offenders(WHERE, batch)
    assert [u for u, _ in found] == [k * 500 + 1 for k in range(20)]
    memo = judge.memo.now()
    assert memo is not None
    kept = len(memo)
    assert memo_mod.SAMPLE <= kept <= memo_mod.SAMPLE + 4 * 500  # not all 10,000
