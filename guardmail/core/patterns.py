"""Many globs and regexes matched at once, at a cost that does not grow with their number.

Each pattern is reduced to a *required literal*: a run of plain characters that every string it
matches must contain. The pattern is filed under one 4-gram of that literal, the one shared by the
fewest other patterns. To match a string we look up the string's own 4-grams and test only the
patterns filed under them, plus the few ("residue") whose literal is shorter than four
characters. This is the
prefilter that code search engines and RE2::Set use, kept small enough to read.

Contracts:
- ``PatternIndex.matching(texts)`` returns exactly the entries whose regex matches one of
  ``texts``: the prefilter only skips entries that cannot match (tests compare against a loop).
- Entries match with ``re.search`` semantics on their compiled regex; anchoring is the pattern's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from fnmatch import translate
from typing import Generic, TypeVar

T = TypeVar("T")

_GLOB_SPECIALS = frozenset("*?[")
_REGEX_BREAKERS = frozenset("^$.|()[]{}\\")
_ESCAPED_LITERALS = frozenset("\\.^$|?*+()[]{}@-_/:!#%&'\",;<=>`~ ")
_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux]")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A compiled pattern, the literal it was filed under (or "" for residue), and its payload."""

    regex: re.Pattern[str]
    literal: str
    payload: T


def glob_regex(glob: str) -> re.Pattern[str]:
    """A glob (fnmatch syntax, whole-string, case-insensitive) as a compiled regex."""
    return re.compile(translate(glob), re.IGNORECASE | re.DOTALL)


def glob_literal(glob: str) -> str:
    """The longest run outside wildcards and brackets: a string every match contains."""
    runs: list[str] = []
    current: list[str] = []
    in_bracket = False
    for ch in glob:
        if in_bracket:
            if ch == "]":
                in_bracket = False
            continue
        if ch in _GLOB_SPECIALS:
            runs.append("".join(current))
            current = []
            in_bracket = ch == "["
            continue
        current.append(ch)
    runs.append("".join(current))
    return max(runs, key=len)


def regex_literal(pattern: str) -> str:
    """A run of literal characters every match of ``pattern`` must contain, or "" if unsure.

    Conservative: a top-level alternation or an inline flag gives ""; groups, classes and escapes
    other than escaped punctuation end a run; a quantifier that allows zero takes back the
    character before it.
    """
    if _INLINE_FLAGS.search(pattern):
        return ""
    runs: list[str] = []
    current: list[str] = []
    depth = 0
    i = 0
    n = len(pattern)

    def end_run() -> None:
        nonlocal current
        runs.append("".join(current))
        current = []

    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if depth == 0 and nxt in _ESCAPED_LITERALS:
                current.append(nxt)
            else:
                end_run()
            i += 2
            continue
        if ch == "[":
            # Skip a character class, honouring "]" first and escapes inside it.
            end_run()
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if ch == "(":
            depth += 1
            end_run()
        elif ch == ")":
            depth = max(0, depth - 1)
            end_run()
        elif ch == "|":
            if depth == 0:
                return ""
            end_run()
        elif ch in "*?{":
            if current:
                current.pop()
            end_run()
            if ch == "{":
                close = pattern.find("}", i)
                i = n if close < 0 else close
        elif ch == "+":
            end_run()
        elif ch in _REGEX_BREAKERS:
            end_run()
        elif depth == 0:
            current.append(ch)
        i += 1
    end_run()
    return max(runs, key=len)


def grams(text: str, size: int) -> set[str]:
    """Every substring of ``text`` of length ``size``."""
    return {text[i : i + size] for i in range(len(text) - size + 1)}


GRAM = 4


def lookup_grams(texts: Iterable[str]) -> frozenset[str]:
    """The lower-case 4-grams of ``texts``: what an index looks up for them."""
    out: set[str] = set()
    for text in texts:
        low = text.lower()
        out.update([low[i : i + GRAM] for i in range(len(low) - GRAM + 1)])
    return frozenset(out)


def _indexable(literal: str) -> bool:
    """Literals shorter than a gram (or non-ASCII, whose case folding differs) go to residue."""
    return len(literal) >= GRAM and literal.isascii()


class PatternIndex(Generic[T]):
    """An immutable set of patterns with an n-gram prefilter. Build with ``from_entries``.

    Each bucket entry carries every gram of its literal: a candidate whose literal grams are not
    all among the text's grams cannot contain the literal, so it is dropped by a set comparison
    before any regex runs.
    """

    __slots__ = ("_by_gram", "_gram_keys", "_residue", "size")

    def __init__(
        self,
        by_gram: dict[str, tuple[tuple[frozenset[str], Entry[T]], ...]],
        residue: tuple[tuple[str, Entry[T]], ...],
    ) -> None:
        self._by_gram = by_gram
        self._gram_keys = frozenset(by_gram)
        self._residue = residue
        self.size = len(residue) + sum(len(v) for v in by_gram.values())

    @classmethod
    def from_entries(cls, entries: Iterable[Entry[T]]) -> PatternIndex[T]:
        items = list(entries)
        # Case-insensitive matching: index and look up lower-case grams.
        counts: Counter[str] = Counter()
        for e in items:
            if _indexable(e.literal):
                counts.update(grams(e.literal.lower(), GRAM))
        by_gram: dict[str, list[tuple[frozenset[str], Entry[T]]]] = {}
        residue: list[tuple[str, Entry[T]]] = []
        for e in items:
            if not _indexable(e.literal):
                # Too short to index, but a substring test still spares most regex runs.
                residue.append((e.literal.lower() if e.literal.isascii() else "", e))
                continue
            need = frozenset(grams(e.literal.lower(), GRAM))
            # File it under its rarest gram: the bucket an input has to look at stays small.
            best = min(sorted(need), key=counts.__getitem__)
            by_gram.setdefault(best, []).append((need, e))
        return cls({k: tuple(v) for k, v in by_gram.items()}, tuple(residue))

    def candidates(
        self, texts: Sequence[str], text_grams: Set[str] | None = None
    ) -> list[Entry[T]]:
        """Entries that may match one of ``texts`` (a superset of those that do).

        ``text_grams``, if given, must be ``lookup_grams(texts)``: callers that see the same
        text often compute it once.
        """
        out: list[Entry[T]] = []
        if self._residue:
            joined = "\x00".join(texts).lower()  # NUL: no literal spans two texts
            out.extend(e for lit, e in self._residue if lit in joined)
        if not self._by_gram:
            return out
        have = lookup_grams(texts) if text_grams is None else text_grams
        # The intersection runs in C over the text's few grams, not over the index.
        for gram in self._gram_keys.intersection(have):
            out += [e for need, e in self._by_gram[gram] if need <= have]
        return out

    def matching(self, texts: Sequence[str], text_grams: Set[str] | None = None) -> list[Entry[T]]:
        """Entries whose regex matches at least one of ``texts``, in candidate order."""
        found: list[Entry[T]] = []
        for entry in self.candidates(texts, text_grams):
            search = entry.regex.search
            for text in texts:
                if search(text):
                    found.append(entry)
                    break
        return found
