r"""Many globs and regexes matched at once, in bounded time, at a cost that does not grow with
their number.

Each pattern is reduced to a *required literal*: a run of plain characters that every string it
matches must contain (regexes.py). All the literals go into one RE2 ``Set``, which finds every
literal a text contains in a single pass over the text (a DFA over all of them, built lazily);
only the patterns whose literal was found are then run. Patterns without a literal ("") are
always run. This is the prefilter that code search engines and RE2's own FilteredRE2 use.

Contracts:
- Entries hold patterns compiled by regexes.py (RE2: linear time whatever the pattern). The Set
  is RE2 too, case-insensitive as the patterns are: finding the literals costs time linear in
  the (bounded) texts, whatever and however many the literals are.
- Patterns see at most ``MAX_TEXT`` characters of a text (``subject``): a longer text is seen as
  its first and last ``MAX_TEXT // 2`` characters joined, so patterns anchored at either end
  (``*@domain``, ``^name``) still see that end. No real address comes near the limit (RFC 5321
  caps a path at 256 octets); the bound keeps a hostile header from multiplying the work of
  every candidate pattern. Lone surrogates (undecodable header bytes) are seen as U+FFFD.
- ``PatternIndex.matching(texts)`` returns exactly the entries whose regex matches the subject of
  one of ``texts``: the prefilter only skips entries that cannot match (tests compare against a
  loop). Where RE2 cannot answer (a Set too large for its memory budget is split until it
  compiles; a search that runs out of memory is told apart by a literal every text contains,
  the empty one, missing from the answer), every entry of that Set is run instead: slower,
  never a skipped pattern.
- Entries match with ``search`` semantics on their compiled regex; anchoring is the pattern's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import re2

from guardmail.core.regexes import Matcher, encodable

T = TypeVar("T")

MAX_TEXT = 1024
# RE2's memory budget for one Set: its program and its DFA's cache of states, which RE2 fills
# only as texts reach new states (a literal set's DFA has at most about one state per literal
# character). 60,000 literals of ~15 characters compile in ~25 MB; a Set that does not fit is
# split in two until each part does.
SET_MAX_MEM = 64 << 20
# Where texts are joined for the one pass of the Set: no literal a person writes holds a NUL, so
# none is found across two texts (and one that were would only make a candidate too many).
_JOIN = "\x00"


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A compiled pattern, the literal every match of it contains ("" if none), its payload."""

    regex: Matcher
    literal: str
    payload: T


def subject(text: str) -> str:
    """``text`` as patterns see it (see the module contracts): bounded, and valid UTF-8."""
    if len(text) > MAX_TEXT:
        half = MAX_TEXT // 2
        text = text[:half] + text[-half:]
    if not text.isascii() and not encodable(text):
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _set_options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False  # as the patterns (regexes.py): the same case folding
    options.literal = True
    options.log_errors = False
    options.max_mem = max_mem
    return options


@dataclass(frozen=True, slots=True)
class _LiteralSet(Generic[T]):
    """One compiled RE2 Set: its pattern ``i + 1`` is literal ``i``, whose entries are
    ``groups[i]``; its pattern 0 is the empty literal, found in every text unless the search
    failed."""

    matcher: re2.Set
    groups: tuple[tuple[Entry[T], ...], ...]

    def candidates(self, joined: str) -> Iterable[Entry[T]]:
        found = self.matcher.Match(joined)
        if not found or 0 not in found:
            # RE2 ran out of memory for this text (it answers "nothing" then): run them all.
            return [e for group in self.groups for e in group]
        groups = self.groups
        return [e for i in found if i for e in groups[i - 1]]


def _literal_sets(
    groups: list[tuple[str, tuple[Entry[T], ...]]], max_mem: int, always: list[Entry[T]]
) -> list[_LiteralSet[T]]:
    """``groups`` (literal, entries) in as few Sets as RE2's budget allows (bisecting); the
    entries of a literal too large for a Set of its own go to ``always``."""
    if not groups:
        return []
    matcher = re2.Set.SearchSet(_set_options(max_mem))
    matcher.Add("")
    for literal, _ in groups:
        matcher.Add(literal)
    try:
        matcher.Compile()
    except re2.error:
        if len(groups) == 1:
            always.extend(groups[0][1])
            return []
        half = len(groups) // 2
        return _literal_sets(groups[:half], max_mem, always) + _literal_sets(
            groups[half:], max_mem, always
        )
    return [_LiteralSet(matcher, tuple(entries for _, entries in groups))]


class PatternIndex(Generic[T]):
    """An immutable set of patterns with a literal prefilter. Build with ``from_entries``."""

    __slots__ = ("_sets", "_always", "size")

    def __init__(self, sets: Sequence[_LiteralSet[T]], always: Sequence[Entry[T]]) -> None:
        self._sets = tuple(sets)
        self._always = tuple(always)
        self.size = len(self._always) + sum(len(g) for s in self._sets for g in s.groups)

    @classmethod
    def from_entries(
        cls, entries: Iterable[Entry[T]], *, max_mem: int = SET_MAX_MEM
    ) -> PatternIndex[T]:
        by_literal: dict[str, list[Entry[T]]] = {}
        always: list[Entry[T]] = []
        for e in entries:
            if e.literal and encodable(e.literal):
                # ASCII equal up to case is one literal of the (case-insensitive) Set; other
                # scripts are kept as written (Python's lower() is not RE2's case folding).
                key = e.literal.lower() if e.literal.isascii() else e.literal
                by_literal.setdefault(key, []).append(e)
            else:
                always.append(e)
        groups = [(literal, tuple(group)) for literal, group in by_literal.items()]
        sets = _literal_sets(groups, max_mem, always)
        return cls(sets, always)

    def candidates(self, texts: Sequence[str]) -> list[Entry[T]]:
        """Entries that may match one of ``texts`` (a superset of those that do)."""
        return self._candidates([subject(text) for text in texts])

    def _candidates(self, subjects: Sequence[str]) -> list[Entry[T]]:
        out = list(self._always)
        if self._sets:
            joined = _JOIN.join(subjects)
            for literals in self._sets:
                out.extend(literals.candidates(joined))
        return out

    def matching(self, texts: Sequence[str]) -> list[Entry[T]]:
        """Entries whose regex matches the subject of one of ``texts``, in candidate order."""
        found: list[Entry[T]] = []
        subjects = [subject(text) for text in texts]
        candidates = self._candidates(subjects)
        if not candidates:
            return found
        for entry in candidates:
            search = entry.regex.search
            for text in subjects:
                if search(text):
                    found.append(entry)
                    break
        return found
