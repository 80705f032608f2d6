"""The trigram prefilter never changes which patterns match, only how many are tried."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.patterns import (
    Entry,
    PatternIndex,
    glob_literal,
    glob_regex,
    regex_literal,
)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("^st[a4]lker[0-9]*@", "lker"),
        (r"x\.example\.net$", "x.example.net"),
        (r"\d+@harass\.example", "@harass.example"),
        ("abc{2,3}def", "def"),
        ("ab(c|d)xyz", "xyz"),
        ("a|b", ""),
        ("(?i)abc", ""),
        ("abcd?", "abc"),
        ("abc+", "abc"),
        ("[]abc]def", "def"),
    ],
)
def test_regex_literal_is_a_substring_every_match_contains(pattern: str, literal: str) -> None:
    assert regex_literal(pattern) == literal


@pytest.mark.parametrize(
    ("glob", "literal"),
    [
        ("*@burner.example", "@burner.example"),
        ("Stalker*", "Stalker"),
        ("st[a4]lker?@x.org", "@x.org"),
        ("[abc]", ""),
    ],
)
def test_glob_literal_is_the_longest_plain_run(glob: str, literal: str) -> None:
    assert glob_literal(glob) == literal


PATTERNS = [
    "^st[a4]lker[0-9]*@",
    r"x\.example\.net$",
    r"\d+@harass\.example",
    "abc{2,3}def",
    "ab(c|d)xyz",
    "a|b",
    "bob.*@",
    "^j.e@",
    "(?i)ABC",
    "lker",
]
GLOBS = ["*@burner.example", "stalker*", "st?lker@*", "*lk*", "[ab]c*"]


def _index() -> PatternIndex[str]:
    entries = [Entry(re.compile(p, re.IGNORECASE), regex_literal(p), p) for p in PATTERNS]
    entries += [Entry(glob_regex(g), glob_literal(g), g) for g in GLOBS]
    return PatternIndex.from_entries(entries)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="abcdejklorstx@.4 0123456789", max_size=24), max_size=3))
def test_index_matches_exactly_what_a_loop_over_every_pattern_matches(texts: list[str]) -> None:
    index = _index()
    brute = {p for p in PATTERNS if any(re.search(p, t, re.IGNORECASE) for t in texts)}
    brute |= {g for g in GLOBS if any(glob_regex(g).search(t) for t in texts)}
    assert {e.payload for e in index.matching(texts)} == brute


def test_prefilter_tries_few_of_many_indexed_patterns() -> None:
    entries = [
        Entry(glob_regex(f"*@burner{i}.example"), glob_literal(f"*@burner{i}.example"), i)
        for i in range(2000)
    ]
    index = PatternIndex.from_entries(entries)
    candidates = index.candidates(["someone@burner1234.example"])
    assert len(candidates) < 50
    assert [e.payload for e in index.matching(["someone@burner1234.example"])] == [1234]
