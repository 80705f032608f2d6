"""The alias linker's fast paths against their slow forms, on random and hostile input: the
union-first text comparison (``profile_similarity``) against ``best_similarity``, and
``own_text``'s white space folding (``str.split``) against the regex it replaced."""

from __future__ import annotations

import re
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.alias_text import (
    _ATTRIBUTION,
    _CUT,
    MAX_OWN_TEXT,
    MAX_PROFILE,
    MAX_TEXT,
    K,
    best_similarity,
    own_text,
    profile_similarity,
    signature,
)

_SPACE = re.compile(r"\s+")


def _own_text_regex(text: str) -> str:
    """``own_text`` as it was: the runs of white space made one space by a regex."""
    kept: list[str] = []
    size = 0
    for line in text[:MAX_TEXT].splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in ">|":
            continue
        if stripped[0] in "-_Bb" and _CUT.match(stripped):
            break
        if stripped[-1] == ":" and _ATTRIBUTION.search(stripped):
            continue
        kept.append(stripped)
        size += len(stripped) + 1
        if size >= MAX_OWN_TEXT:
            break
    return _SPACE.sub(" ", " ".join(kept)).casefold()[:MAX_OWN_TEXT]


def test_regex_white_space_is_what_split_splits_at() -> None:
    # The premise of the fast path, over every code point: ``\s`` matches exactly the
    # characters ``str.split`` (and ``str.strip``) treat as white space.
    space = _SPACE.fullmatch
    assert [c for c in map(chr, range(sys.maxunicode + 1)) if bool(space(c)) != c.isspace()] == []


# Text made of what own_text treats specially: every kind of white space and line end,
# quotes, cut and attribution lines, case that folds to more than one character.
_PIECES = st.sampled_from(
    [
        " ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x1d",
        "\x1e",
        "\x1f",
        "\x85",
        "\xa0",
        "\u1680",
        "\u2000",
        "\u2028",
        "\u2029",
        "\u3000",
        "\u200b",
        "\ufeff",
        "> ",
        "|",
        "-- \n",
        "--\n",
        "-----Original Message-----\n",
        "__________\n",
        "Begin forwarded message",
        "wrote:",
        "On Monday, Ann wrote:\n",
        "Straße",
        "ﬁ",
        "İ",
        "word",
        "Mark",
        ".",
        "x" * 300,
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=20)), max_size=60))
def test_own_text_is_the_regex_forms(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert own_text(text) == _own_text_regex(text)


def test_own_text_on_a_hostile_body_is_the_regex_forms() -> None:
    for text in ("\u3000 \t" * 2_000_000, ("a \x85" * 500 + "\n") * 2_000, "x" * 10_000_000):
        assert own_text(text) == _own_text_regex(text)


def _signature(values: list[int]) -> tuple[int, ...]:
    return tuple(sorted(set(values)))[:K]


# Signatures drawn from a small pool of values, so that they share many (as one writer's do),
# some or none; of any length (a stored one is K long, but the function is total).
_VALUE = st.integers(min_value=0, max_value=300) | st.integers(min_value=0, max_value=2**32 - 1)
_SIG = st.lists(_VALUE, min_size=1, max_size=K + 16).map(_signature)


@settings(max_examples=300, deadline=None)
@given(_SIG, st.lists(_SIG, min_size=0, max_size=MAX_PROFILE + 3))
def test_profile_similarity_is_best_similarity(
    query: tuple[int, ...], profile: list[tuple[int, ...]]
) -> None:
    sets = [frozenset(s) for s in profile]
    union = frozenset().union(*sets)
    fast = profile_similarity(query, profile, sets, union)
    # Bit for bit: the same counts divided, whichever signature is the best.
    assert fast == best_similarity(query, profile)
    assert fast == best_similarity(query, profile, sets)


def test_profile_similarity_on_real_texts() -> None:
    words = "the lights were on til late thought you would be there anyway answer".split()
    texts = [" ".join(words[i:] + words[:i]) * 8 for i in range(len(words))]
    sigs = [s for s in map(signature, texts) if s]
    assert len(sigs) > MAX_PROFILE
    for query in sigs:
        for n in range(len(sigs) + 1):
            profile = sigs[:n]
            sets = [frozenset(s) for s in profile]
            union = frozenset().union(*sets)
            assert profile_similarity(query, profile, sets, union) == best_similarity(
                query, profile
            )
