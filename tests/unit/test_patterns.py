"""The trigram prefilter never changes which patterns match, only how many are tried; globs
mean on RE2 what they mean to fnmatch."""

import re
import warnings
from fnmatch import translate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.patterns import GRAM, Entry, PatternIndex, lookup_grams, subject
from guardmail.core.regexes import compile_regex, glob_literal, glob_regex, regex_literal


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
        ("\\x41bcd", "bcd"),
        ("\\x{263a}bcd", "bcd"),
        ("\\pNabcd", "abcd"),
        ("\\p{Greek}abcd", "abcd"),
        ("\\0123abcd", "3abcd"),
        ("\\Qa.b\\E", ""),
        ("(?-i:abcd)", ""),
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
    "\\x6Cker@",
    "\\pLker",
    "t\\x{61}lk",
]
GLOBS = ["*@burner.example", "stalker*", "st?lker@*", "*lk*", "[ab]c*"]


def _index() -> PatternIndex[str]:
    entries = [Entry(compile_regex(p), regex_literal(p), p) for p in PATTERNS]
    entries += [Entry(glob_regex(g), glob_literal(g), g) for g in GLOBS]
    return PatternIndex.from_entries(entries)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="abcdejklorstx@.4 0123456789", max_size=24), max_size=3))
def test_index_matches_exactly_what_a_loop_over_every_pattern_matches(texts: list[str]) -> None:
    index = _index()
    brute = {p for p in PATTERNS if any(compile_regex(p).search(t) for t in texts)}
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


GLOB_CHARS = "ab-!]^[\\&|.*?\nÉé@"
BRACKET = st.text(alphabet="ab-!]^[\\&z", max_size=6).map(lambda s: f"[{s}]")
GLOBS_OF_ANY_SHAPE = st.one_of(
    st.text(alphabet=GLOB_CHARS, max_size=10),
    st.lists(st.one_of(BRACKET, st.sampled_from(["*", "?", "a", "-", "["])), max_size=3).map(
        "".join
    ),
)


@settings(max_examples=3000, deadline=None)
@given(GLOBS_OF_ANY_SHAPE, st.text(alphabet="ab-!]^[\\&|.\nÉéAB@z", max_size=8))
def test_glob_matches_exactly_what_fnmatch_translate_matches(glob: str, text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" and the like
        python = re.compile(translate(glob), re.IGNORECASE | re.DOTALL)
    assert bool(glob_regex(glob).search(text)) == bool(python.match(text))


@pytest.mark.parametrize(
    ("glob", "text", "matches"),
    [
        ("rob@*", "rob@example.net", True),
        ("rob@*", "jarob@example.net", False),  # was matched while globs were searched
        ("Stalker*", "Stalker Mark", True),
        ("Stalker*", "Not Stalker", False),
        ("*stalker*", "Not Stalker", True),
        ("*@burner.example", "x@burner.example", True),
        ("*@burner.example", "x@burner.example.net", False),
    ],
)
def test_a_glob_matches_the_whole_text_as_fnmatch_does(glob: str, text: str, matches: bool) -> None:
    assert bool(glob_regex(glob).search(text)) is matches


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="abAB@.xz-4\u0430\ud800", max_size=30), max_size=4))
def test_lookup_grams_split_at_the_domain_equal_every_gram_of_every_subject(
    texts: list[str],
) -> None:
    every = set()
    for text in texts:
        low = subject(text).lower()
        every |= {low[i : i + GRAM] for i in range(len(low) - GRAM + 1)}
    assert lookup_grams(texts) == every


def test_lookup_grams_of_a_long_address_see_both_ends_as_subject_does() -> None:
    text = "x" * 3000 + "@Example.ORG"
    low = subject(text).lower()
    assert lookup_grams([text]) == {low[i : i + GRAM] for i in range(len(low) - GRAM + 1)}
