"""The timing signal of the alias linker: the hours of the offender's earlier mail. Weak (LR 3),
added only to an offender another signal found. Table-driven, hits and near misses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guardmail.core.alias_features import Features, extract, from_dict, utc_hour
from guardmail.core.alias_weights import W_TIMING
from guardmail.core.aliases import AliasIndex
from guardmail.core.item import mail_identities

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def mail(display: str, date: str) -> bytes:
    return f"From: {display} <new1@x.example>\r\nDate: {date}\r\n\r\nhi\r\n".encode()


def features(raw: bytes) -> Features:
    return extract(raw, mail_identities(raw))


def index(learned: int, hours: tuple[int, ...]) -> AliasIndex:
    """An offender whose ``learned`` messages were sent at ``hours`` (UTC) in turn."""
    seen = []
    for i in range(learned):
        h = hours[i % len(hours)]
        date = f"Mon, 1 Dec 2025 {h:02}:15:00 +0000"
        raw = f"From: Mark Dalton <md@dalton.example>\r\nDate: {date}\r\n\r\nx\r\n"
        seen.append(("Mark", features(raw.encode()), NOW - timedelta(days=1 + i)))
    return AliasIndex.build([("Mark", ["md@dalton.example"], ["Mark Dalton"])], seen)


def timing(idx: AliasIndex, raw: bytes) -> float | None:
    found = idx.score(features(raw), now=NOW)
    for s in found[0].signals if found else ():
        if s.signal == "timing":
            return s.weight
    return None


NIGHT = (22, 23, 23, 0)
CASES = [
    # (what, learned, hours, new mail, timing weight expected)
    ("the offender's hour", 30, NIGHT, mail("Mark", "Tue, 2 Dec 2026 23:40:00 +0000"), W_TIMING),
    (
        "an hour beside the busiest",
        30,
        NIGHT,
        mail("Mark", "Tue, 2 Dec 2026 22:05:00 +0000"),
        W_TIMING,
    ),
    ("two hours off the busiest", 30, NIGHT, mail("Mark", "Tue, 2 Dec 2026 21:05:00 +0000"), None),
    (
        "the same hour written in another zone",
        30,
        NIGHT,
        mail("Mark", "Wed, 3 Dec 2026 00:40:00 +0100"),
        W_TIMING,
    ),
    ("midday", 30, NIGHT, mail("Mark", "Tue, 2 Dec 2026 12:00:00 +0000"), None),
    ("too few learned messages", 19, NIGHT, mail("Mark", "Tue, 2 Dec 2026 23:40:00 +0000"), None),
    (
        "an offender who writes at all hours",
        48,
        tuple(range(24)),
        mail("Mark", "Tue, 2 Dec 2026 23:40:00 +0000"),
        None,
    ),
    ("no zone in the Date", 30, NIGHT, mail("Mark", "Tue, 2 Dec 2026 23:40:00"), None),
]


@pytest.mark.parametrize(
    ("what", "learned", "hours", "raw", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_timing(
    what: str, learned: int, hours: tuple[int, ...], raw: bytes, expected: float | None
) -> None:
    assert timing(index(learned, hours), raw) == expected, what


def test_timing_alone_finds_no_one() -> None:
    raw = mail("Jo Bloggs", "Tue, 2 Dec 2026 23:40:00 +0000")
    assert index(30, NIGHT).score(features(raw), now=NOW) == []


@pytest.mark.parametrize(
    ("date", "hour"),
    [
        ("Tue, 2 Dec 2026 23:40:00 +0000", 23),
        ("Tue, 2 Dec 2026 23:40:00 -0230", 2),
        ("Tue, 2 Dec 2026 23:40:00", -1),
        ("yesterday", -1),
        ("", -1),
        ("Tue, 2 Dec 99999999999 23:40:00 +0000", -1),
    ],
)
def test_utc_hour(date: str, hour: int) -> None:
    assert utc_hour(date) == hour


def test_the_hour_is_stored() -> None:
    f = features(mail("Mark", "Tue, 2 Dec 2026 23:40:00 +0000"))
    assert f.hour == 23 and from_dict(f.as_dict()) == f
    assert from_dict({**f.as_dict(), "hour": 24}).hour == -1
