"""The text signal of the alias linker (core/alias_text.py): the writer's own words, their MinHash
signature, and the similarity bands; added only to an offender another signal found, for at most
``MAX_TEXT_CANDIDATES`` of them. Table-driven, hits and near misses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guardmail.core.alias_features import Features, extract, from_dict
from guardmail.core.alias_text import (
    BANDS,
    MAX_PROFILE,
    MAX_TEXT_CANDIDATES,
    MIN_OWN_TEXT,
    K,
    band_weight,
    best_similarity,
    message_signature,
    own_text,
    signature,
    similarity,
    valid,
)
from guardmail.core.alias_weights import DEFAULT_THRESHOLD
from guardmail.core.aliases import AliasIndex
from guardmail.core.item import mail_identities

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

OFFENDER = (
    "Honestly I dont get why you keep ignoring me, its been weeks now and you still wont pick up.\n"
    "I drove past the old place on Tuesday, the lights were on til late. Thought you'd be there.\n"
    "Anyway. I am not going anywhere, you know that, and your sister knows it too. Just answer.\n"
)
# The same writer's next message: a new first line, the rest of their habits kept.
OFFENDER_AGAIN = (
    "Still nothing?? Fine.\n"
    "I drove past the old place on Tuesday, the lights were on til late. Thought you'd be there.\n"
    "Anyway. I am not going anywhere, you know that, and your sister knows it too. Just answer.\n"
)
OTHER = (
    "Dear colleagues, please find attached the minutes of the committee meeting of 4 November.\n"
    "The budget for the spring workshop was approved; registrations open on the first of March.\n"
    "Kindly send any corrections to the secretariat before Friday so they can be circulated.\n"
)
SAME_TOPIC = (
    "Dear all, the committee met on 4 November; the minutes are attached to this message.\n"
    "We approved the workshop budget. Registration for the spring workshop opens in March.\n"
    "Corrections to the secretariat please, by the end of the week, so we can send them out.\n"
)


def test_a_text_is_identical_to_itself_and_far_from_another_writers() -> None:
    a, b = signature(OFFENDER), signature(OTHER)
    assert len(a) == K and len(b) == K
    assert similarity(a, a) == 1.0
    assert similarity(a, b) < BANDS[-1][0]


# (what, new text, band expected: the LR of the band, 1.0 below the lowest)
CASES = [
    ("the same text again", OFFENDER, BANDS[0][1]),
    ("the same writer, the first line changed", OFFENDER_AGAIN, BANDS[0][1]),
    ("the same text quoted in a reply", "Thanks.\n" + "> " + OFFENDER.replace("\n", "\n> "), None),
    ("another writer, another topic", OTHER, 1.0),
    ("another writer on the same topic as the profile", SAME_TOPIC, 1.0),
    ("a text too short to say anything", "Just answer.", None),
]


@pytest.mark.parametrize(("what", "text", "ratio"), CASES, ids=[c[0] for c in CASES])
def test_text_bands(what: str, text: str, ratio: float | None) -> None:
    query = signature(text)
    if ratio is None:
        assert query == ()  # no signature: nothing to compare
        return
    profile = [signature(OFFENDER if "topic as" not in what else OTHER)]
    if "topic as" in what:
        # The profile is OTHER's writer: a text on the same subject by someone else.
        value = best_similarity(query, profile)
        assert band_weight(value)[0] < BANDS[0][1], value
        return
    assert band_weight(best_similarity(query, profile))[0] == ratio


OWN_TEXT_CASES = [
    ("quoted lines", "mine and only mine\n> yours\n>> older", "mine and only mine"),
    ("an attribution line", "On Monday, Ann wrote:\nmine", "mine"),
    ("a signature", "mine\n-- \nMark\n+44 7700 900123", "mine"),
    ("a list footer", "mine\n__________________\nList mailing list", "mine"),
    ("an Outlook reply", "mine\n-----Original Message-----\nFrom: x\nyours", "mine"),
    ("a forward", "mine\n---------- Forwarded message ---------\nyours", "mine"),
    ("case and white space", "  Mine\tAND   mine  \n\n", "mine and mine"),
]


@pytest.mark.parametrize(
    ("what", "text", "own"), OWN_TEXT_CASES, ids=[c[0] for c in OWN_TEXT_CASES]
)
def test_own_text_keeps_only_the_writers_words(what: str, text: str, own: str) -> None:
    assert own_text(text) == own


def test_signatures_are_stable_across_processes() -> None:
    # Stored profiles are compared with new mail for years: the hash must never change (CRC-32,
    # not ``hash``, which is salted per process). A change of the algorithm is a migration.
    assert signature(OFFENDER)[:4] == (9205447, 24898135, 37561972, 66845368)


def test_bounded_input() -> None:
    huge = " ".join(f"w{i}" for i in range(200_000)) + "\n"
    assert len(own_text(huge)) <= 1500
    assert len(signature(huge)) == K
    assert signature("word " * 200_000) == ()  # a few shingles repeated: no signature
    assert signature("x" * (MIN_OWN_TEXT - 1)) == ()
    assert message_signature(b"\xff" * 100_000) == ()


@pytest.mark.parametrize(
    "stored",
    [[3, 2, 1], [1, 1], [True, 2], [-1, 2], [2**32], list(range(K + 1)), ["1"], []],
    ids=[
        "unsorted",
        "repeated",
        "a bool",
        "negative",
        "too large",
        "too long",
        "a string",
        "empty",
    ],
)
def test_a_malformed_stored_signature_is_dropped(stored: list[object]) -> None:
    assert valid(stored) == ()
    assert from_dict({"text": stored}).text == ()


def test_a_stored_signature_round_trips() -> None:
    f = Features(address="m@x.example", text=signature(OFFENDER))
    assert from_dict(f.as_dict()) == f


def mail(frm: str, text: str, client: str = "") -> bytes:
    head = f"From: {frm}\r\nTo: p@person.example\r\nSubject: hi\r\n"
    if client:
        head += f"User-Agent: {client}\r\n"
    return (head + "\r\n" + text.replace("\n", "\r\n")).encode()


def index(*offenders: tuple[str, str]) -> AliasIndex:
    """Offenders (name, text of their earlier mail), each with one learned message."""
    seen = []
    for i, (name, text) in enumerate(offenders):
        raw = mail(f"{name} <{name.lower()}@off.example>", text, client="Mutt/2.2.9")
        seen.append((name, extract(raw, mail_identities(raw), text=True), NOW - timedelta(days=i)))
    return AliasIndex.build([(n, [f"{n.lower()}@off.example"], []) for n, _ in offenders], seen)


def score(idx: AliasIndex, raw: bytes) -> tuple[list[str], list[str], int]:
    """(offenders found, signals of the best, calls of the text callable)."""
    calls = [0]

    def text() -> tuple[int, ...]:
        calls[0] += 1
        return message_signature(raw)

    found = idx.score(extract(raw, mail_identities(raw)), now=NOW, text=text)
    return (
        [s.offender for s in found],
        [s.signal for s in found[0].signals] if found else [],
        calls[0],
    )


def test_text_adds_to_an_offender_another_signal_found() -> None:
    raw = mail("new1@free.example", OFFENDER_AGAIN, client="Mutt/2.2.9")
    found, signals, calls = score(index(("Mark", OFFENDER)), raw)
    assert found == ["Mark"] and signals == ["text", "client"] and calls == 1


def test_text_alone_finds_no_one() -> None:
    # The offender's very words from an account with nothing else in common: no suspicion
    # (style is weak evidence; the issue: never decide on it alone), and no signature made.
    found, _, calls = score(index(("Mark", OFFENDER)), mail("new1@free.example", OFFENDER))
    assert found == [] and calls == 0


def test_text_and_a_first_name_stay_below_the_threshold() -> None:
    # A first name is LR 3: even the strongest text band (LR 150) leaves it below.
    raw = mail("Mark Other <new1@free.example>", OFFENDER)
    idx = AliasIndex.build([("Mark", ["mark@off.example"], ["Mark Dalton"])])
    learned = mail("Mark Dalton <mark@off.example>", OFFENDER)
    idx.add("Mark", extract(learned, mail_identities(learned), text=True), NOW)
    [s] = idx.score(
        extract(raw, mail_identities(raw)), now=NOW, text=lambda: message_signature(raw)
    )
    assert {x.signal for x in s.signals} == {"display_name", "text"}
    assert s.likelihood < DEFAULT_THRESHOLD


def test_text_and_the_same_client_cross_the_threshold() -> None:
    # The client with its version (LR 12, measured on real senders) and the strongest band.
    raw = mail("new1@free.example", OFFENDER, client="Mutt/2.2.9")
    [s] = index(("Mark", OFFENDER)).score(
        extract(raw, mail_identities(raw)), now=NOW, text=lambda: message_signature(raw)
    )
    assert [x.signal for x in s.signals] == ["text", "client"]
    assert s.likelihood >= DEFAULT_THRESHOLD


def test_another_writers_text_adds_nothing() -> None:
    raw = mail("new1@free.example", OTHER, client="Mutt/2.2.9")
    assert score(index(("Mark", OFFENDER)), raw)[1] == ["client"]


def test_text_is_compared_for_at_most_a_few_candidates() -> None:
    # Every offender shares the client: the text is read once, compared with MAX_TEXT_CANDIDATES.
    names = [f"Off{i}" for i in range(MAX_TEXT_CANDIDATES + 3)]
    idx = index(*((n, OFFENDER) for n in names))
    raw = mail("new1@free.example", OFFENDER, client="Mutt/2.2.9")
    found = idx.score(
        extract(raw, mail_identities(raw)), now=NOW, text=lambda: message_signature(raw)
    )
    with_text = [s for s in found if any(x.signal == "text" for x in s.signals)]
    assert len(found) == len(names) and len(with_text) == MAX_TEXT_CANDIDATES


@pytest.mark.parametrize(
    ("others", "signals"), [(MAX_PROFILE - 1, ["text", "client"]), (MAX_PROFILE, ["client"])]
)
def test_the_profile_keeps_the_newest_texts(others: int, signals: list[str]) -> None:
    # The offender's first text, then ``others`` messages of another text: once MAX_PROFILE
    # newer ones are kept, the first is no longer compared.
    idx = index(("Mark", OFFENDER))
    for i in range(others):
        raw = mail("Mark <mark@off.example>", OTHER, client="Mutt/2.2.9")
        idx.add("Mark", extract(raw, mail_identities(raw), text=True), NOW + timedelta(days=i))
    assert score(idx, mail("new1@free.example", OFFENDER, client="Mutt/2.2.9"))[1] == signals


def test_band_weights_are_ordered() -> None:
    assert [b[0] for b in BANDS] == sorted((b[0] for b in BANDS), reverse=True)
    assert [b[1] for b in BANDS] == sorted((b[1] for b in BANDS), reverse=True)
    assert band_weight(0.0) == (1.0, 0.0)
    assert band_weight(1.0)[0] == BANDS[0][1]


# (what, sender, client, text compared): with ``decisive``, the text is read only where an
# offender can reach the threshold with it (one already there too: its signals are shown).
DECISIVE_CASES = [
    ("a surname only: the text can carry it across", "Jo Dalton <n1@free.example>", "", True),
    ("the same full name: over the threshold already", "Mark Dalton <n1@free.example>", "", True),
    ("the client only: the strongest band can carry it", "n1@free.example", "Mutt/2.2.9", True),
    ("a first name only: even the strongest band stays below", "Mark <n1@free.example>", "", False),
]


@pytest.mark.parametrize(
    ("what", "sender", "client", "compared"), DECISIVE_CASES, ids=[c[0] for c in DECISIVE_CASES]
)
def test_a_decision_reads_the_text_only_where_it_can_matter(
    what: str, sender: str, client: str, compared: bool
) -> None:
    idx = AliasIndex.build([("Mark", ["mark@off.example"], ["Mark Dalton"])])
    learned = mail("Mark Dalton <mark@off.example>", OFFENDER, client="Mutt/2.2.9")
    idx.add("Mark", extract(learned, mail_identities(learned), text=True), NOW)
    raw = mail(sender, OFFENDER_AGAIN, client=client)
    calls = [0]

    def text() -> tuple[int, ...]:
        calls[0] += 1
        return message_signature(raw)

    [s] = idx.score(
        extract(raw, mail_identities(raw)), now=NOW, text=text, decisive=DEFAULT_THRESHOLD
    )
    assert calls[0] == int(compared)
    assert any(x.signal == "text" for x in s.signals) == compared
    if compared:
        assert s.likelihood >= DEFAULT_THRESHOLD


def _reference_signature(text: str) -> tuple[int, ...]:
    """The signature as first written: every 5-gram sliced, every value sorted (the values
    stored by earlier versions: a faster ``signature`` must give the same)."""
    import re
    import zlib

    own = own_text(text)
    if len(own) < MIN_OWN_TEXT:
        return ()
    data = own.encode("utf-8", "replace")
    grams = [data[i : i + 5] for i in range(len(data) - 4)]
    words = re.findall(r"\w+", own)
    pairs = [f"{a}\0{b}".encode() for a, b in zip(words, words[1:], strict=False)]
    hashes = {zlib.crc32(g) for g in grams} | {zlib.crc32(p) for p in pairs}
    return tuple(sorted(hashes)[:K]) if len(hashes) >= K else ()


@pytest.mark.parametrize("seed", range(12))
def test_the_signature_is_that_of_every_shingle(seed: int) -> None:
    import random

    rng = random.Random(seed)
    words = ["the", "old", "place", "Tuesday", "you", "Grüße", "ñandú", "naïve", "!", "x", "I'd"]
    size = rng.choice([40, 60, 120, 400, 2000])
    text = " ".join(rng.choice(words) for _ in range(size))
    text += " " + " ".join(str(rng.randrange(10**6)) for _ in range(rng.randrange(50)))
    assert signature(text) == _reference_signature(text)
    assert signature(OFFENDER) == _reference_signature(OFFENDER)


def test_a_hash_of_zero_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The distinct values are found by a neighbour test: a CRC-32 of 0 (1 in 4 billion),
    # the smallest value, must still count. Tables of zeros make every 5-gram's value 0.
    import re
    import zlib

    import numpy as np

    from guardmail.core import alias_shingles

    monkeypatch.setattr(alias_shingles, "_CRC_AT", np.zeros((5, 256), dtype=np.uint32))
    monkeypatch.setattr(alias_shingles, "_CRC_01", np.zeros(65536, dtype=np.uint32))
    monkeypatch.setattr(alias_shingles, "_CRC_23", np.zeros(65536, dtype=np.uint32))
    text = " ".join(f"word{i}" for i in range(120))
    words = re.findall(r"\w+", own_text(text))
    pairs = {zlib.crc32(f"{a}\0{b}".encode()) for a, b in zip(words, words[1:], strict=False)}
    assert len(pairs) > K
    assert signature(text) == tuple(sorted(pairs | {0})[:K])
    assert signature(text)[0] == 0


def test_numpy_loads_only_when_a_signature_is_made() -> None:
    # The linker is off by default: a daemon that never makes a signature (an ISP's milter)
    # must not carry numpy (~11 MB resident).
    import subprocess
    import sys

    probe = (
        "import sys, guardmail.core.alias_text as t, guardmail.daemon.supervisor\n"
        "before = 'numpy' in sys.modules\n"
        "t.signature(' '.join(f'word{i}' for i in range(120)))\n"
        "print(before, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
