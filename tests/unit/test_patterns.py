"""The literal prefilter never changes which patterns match, only how many are tried (also when
RE2's budget splits its Set or a search runs out of memory); globs mean on RE2 what they mean to
fnmatch."""

import re
import warnings
from dataclasses import replace
from fnmatch import translate

import pytest
import re2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guardmail.core.literals import glob_literal, regex_literal, regex_literals
from guardmail.core.patterns import Entry, PatternIndex, glob_entry, regex_entry, subject
from guardmail.core.regexes import compile_regex, glob_regex


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
    "^ali[a4]s12x[0-9]*@",
    "^ali[a4]s1x",
    "\\pLab\\pL*@x",
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
    "st\u00e4lk",
    "\u212aelvin",
    "ka\u00df",
]
GLOBS = [
    "*@burner.example",
    "stalker*",
    "st?lker@*",
    "*lk*",
    "[ab]c*",
    "*\u00c9t\u00e9*",
    "kelvin*",
    "*ss",
    "bob@x.org",
    "*b\x00a*",
]


def _entries() -> list[Entry[str]]:
    return [regex_entry(p, p) for p in PATTERNS] + [glob_entry(g, g) for g in GLOBS]


INDEX = PatternIndex.from_entries(_entries())
TEXTS = st.lists(
    st.text(
        alphabet="abcdejklorstx@.4 0123456789\u00e4\u00c4\u212aKvin\u00dfS\u00c9\u00e9\ud800",
        max_size=24,
    ),
    max_size=3,
)


def _brute(texts: list[str]) -> set[str]:
    found = {p for p in PATTERNS if any(compile_regex(p).search(subject(t)) for t in texts)}
    return found | {g for g in GLOBS if any(glob_regex(g).search(subject(t)) for t in texts)}


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_index_matches_exactly_what_a_loop_over_every_pattern_matches(texts: list[str]) -> None:
    assert {e.payload for e in INDEX.matching(texts)} == _brute(texts)


def test_literals_are_found_whatever_their_case_as_the_patterns_match() -> None:
    # Upper case, and the Kelvin sign, which RE2 (as re.IGNORECASE) folds to k.
    texts = ["ST\u00c4LK@x", "\u212aELVIN", "KA\u00df"]
    assert {e.payload for e in INDEX.matching(texts)} == _brute(texts)
    assert _brute(texts) >= {"st\u00e4lk", "\u212aelvin", "ka\u00df"}


# Too small a budget for all the literals in one RE2 Set: the index splits it until each part
# compiles (found by trying: 100 such literals fail at this budget).
SMALL_BUDGET = 120_000


@settings(max_examples=100, deadline=None)
@given(TEXTS)
def test_a_set_split_for_rejecting_budget_still_matches_what_a_loop_matches(
    texts: list[str],
) -> None:
    entries = _entries() + [
        Entry(glob_regex(f"*@burner{i}.example"), glob_literal(f"*@burner{i}.example"), "b")
        for i in range(300)
    ]
    index = PatternIndex.from_entries(entries, max_mem=SMALL_BUDGET)
    assert len(index._sets) > 1
    brute = _brute(texts) | ({"b"} if any("@burner" in t for t in texts) else set())
    assert {e.payload for e in index.matching(texts)} == brute


class _OutOfMemory:
    """An RE2 Set whose every search fails, as RE2 answers when its DFA runs out of memory."""

    def Match(self, text: str) -> None:  # noqa: N802 (RE2's name)
        return None


def test_a_search_that_runs_out_of_memory_runs_every_pattern_instead() -> None:
    index = PatternIndex.from_entries(_entries())
    index._sets = tuple(replace(s, matcher=_OutOfMemory()) for s in index._sets)  # type: ignore[arg-type]
    texts = ["st4lker9@x.example.net", "bob@burner.example"]
    # Every pattern a Set holds is a candidate (globs answered by lookups are not in them).
    in_sets = {id(e) for s in index._sets for gs in (s.groups, s.sure) for g in gs for e in g}
    assert len(in_sets) > len(PATTERNS)
    assert in_sets <= {id(e) for e in index.candidates(texts)}
    assert {e.payload for e in index.matching(texts)} == _brute(texts) != set()


def test_prefilter_tries_few_of_many_indexed_patterns() -> None:
    entries = [
        Entry(glob_regex(f"*@burner{i}.example"), glob_literal(f"*@burner{i}.example"), i)
        for i in range(2000)
    ]
    index = PatternIndex.from_entries(entries)
    candidates = index.candidates(["someone@burner1234.example"])
    assert len(candidates) < 50
    assert [e.payload for e in index.matching(["someone@burner1234.example"])] == [1234]


# Globs of a plain run between optional stars are checked by string operations on ASCII texts and by
# their literal for *run*: exactly what their regex answers, whatever the text (Kelvin sign,
# upper case, NUL, long texts cut by subject()).
SHAPED_GLOBS = st.tuples(
    st.sampled_from(["", "*", "**"]),
    st.text(alphabet="ab@.ikKs\x00", min_size=1, max_size=4),
    st.sampled_from(["", "*", "**"]),
).map("".join)
SHAPE_TEXTS = st.lists(
    st.one_of(
        st.text(alphabet="ab@.ikKsS\u212a\u017f\u0130\x00\u00e4", max_size=10),
        st.text(alphabet="ab@.k", min_size=1, max_size=3).map(lambda t: t * 400),
    ),
    max_size=3,
)


# Regexes of the characters regex_literals treats specially, searched in texts of their letters:
# every run it gives is in every match (what the index relies on to skip a text).
REGEX_PIECES = st.lists(
    st.sampled_from(
        ["a", "b", "k", "@", ".", "\\.", "*", "+", "?", "{2}", "{0,1}", "(", ")", "|"]
        + ["[ab]", "^", "$", "\\w", "\\pL", "\\x61", "(?:", "(?i)"]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(REGEX_PIECES, st.text(alphabet="abkAK@.\u212a", max_size=10))
def test_every_run_regex_literals_gives_is_in_every_match(pattern: str, text: str) -> None:
    try:
        regex = compile_regex(pattern)
    except ValueError:
        return
    if regex.search(text):
        options = re2.Options()
        options.case_sensitive = False
        options.literal = True
        for run in regex_literals(pattern):
            assert re2.compile(run, options).search(text), (pattern, run)


@settings(max_examples=1500, deadline=None)
@given(st.lists(SHAPED_GLOBS, min_size=1, max_size=6), SHAPE_TEXTS)
@example(["i*", "*k", "S*"], ["\u0130x", "ai", "x\u212a", "\u017fx"])  # İ is no i to RE2; K, ſ are
def test_globs_checked_by_shape_match_exactly_what_their_regex_matches(
    globs: list[str], texts: list[str]
) -> None:
    entries = [glob_entry(g, n) for n, g in enumerate(globs)]
    index = PatternIndex.from_entries(entries)
    brute = [e.payload for e in entries if any(e.regex.search(subject(t)) for t in texts)]
    assert sorted(e.payload for e in index.matching(texts)) == brute


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


ANCHORED = [
    *PATTERNS,
    r"^a\b",
    r"\bst",
    r"x$",
    r"^$",
    r"(?-i:Ab)",
    r"a\z",
    r"\Bb",
    "(a|ab)(c|bcd)(d*)",
]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdejklorstx@.4 \n\u00e4\u212aAB", max_size=16))
def test_a_pattern_searched_by_its_set_matches_as_its_regex_does(text: str) -> None:
    options = re2.Options()
    options.case_sensitive = False
    for pattern in ANCHORED:
        regex = re2.compile(pattern, options)
        assert bool(compile_regex(pattern).search(text)) is bool(regex.search(text)), pattern


class _SetOutOfMemory:
    """An RE2 Set of a pattern and the empty one whose DFA ran out of memory: RE2 answers
    nothing."""

    def Match(self, text: str) -> None:  # noqa: N802 (RE2's name)
        return None


def test_a_pattern_whose_set_runs_out_of_memory_is_searched_by_its_regex() -> None:
    source = "^st[a4]lker[0-9]*@"
    starved = type(compile_regex(source))(_SetOutOfMemory(), source)  # type: ignore[call-arg]
    assert starved.search("st4lker9@x.example")
    assert not starved.search("someone@x.example")


# Regexes sharing their longest required run, each with a run of its own (offenders' patterns
# written alike): each goes into the Set under its least shared run of 3 characters or more.
SHARED_RUN = [f"^ali[a4]s{i}x[0-9]*@" for i in range(12)] + [
    f"^{name}[0-9]*@gmail\\.com$" for name in ("bob", "joe", "kim", "al")
]


def _shared_run_index() -> PatternIndex[str]:
    return PatternIndex.from_entries([regex_entry(p, p) for p in SHARED_RUN])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(alphabet="alis4x0123456789@gmail.combjk\u212a", max_size=24)
        | st.sampled_from(["ali4s7x1@a", "ALIas11x@b", "bob7@gmail.com", "al@gmail.com"]),
        max_size=3,
    )
)
def test_regexes_under_their_least_shared_run_match_what_a_loop_matches(texts: list[str]) -> None:
    brute = {p for p in SHARED_RUN if any(compile_regex(p).search(subject(t)) for t in texts)}
    assert {e.payload for e in _shared_run_index().matching(texts)} == brute


def test_a_regex_hit_makes_no_candidate_of_regexes_that_share_only_a_run() -> None:
    index = _shared_run_index()
    assert [e.payload for e in index.candidates(["ali4s7x1@fresh.example"])] == [SHARED_RUN[7]]
    # "al" is shorter than the shortest run taken instead of a shared one: it keeps
    # "@gmail.com", alone now, and every gmail.com text makes it a candidate.
    gmail = {e.payload for e in index.candidates(["bob7@gmail.com"])}
    assert gmail == {SHARED_RUN[12], SHARED_RUN[15]}
    assert [e.payload for e in index.candidates(["zed@gmail.com"])] == [SHARED_RUN[15]]
