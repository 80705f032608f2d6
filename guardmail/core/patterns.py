r"""Many globs and regexes matched at once, in bounded time, at a cost that does not grow with
their number.

Each pattern is reduced to a *required literal*: a run of plain characters that every string it
matches must contain (literals.py). All the literals go into one RE2 ``Set``, which finds every
literal a text contains in a single pass over the text (a DFA over all of them, built lazily);
only the patterns whose literal was found are then run. Patterns without a literal ("") are
always run. A regex has several required runs: it goes into the Set under the least shared
of them (``_least_shared``), so that patterns written alike are not all candidates for a text
that matches one. This is the prefilter that code search engines and RE2's own FilteredRE2 use.

Most globs need no RE2 search at all (``Entry.shape``, regexes.glob_shape). ``*@domain``,
``name *`` and exact globs are not in the Set: glob_lookups.py answers them on ASCII texts by
one dict lookup each. Of the others, a candidate ``*run`` or ``run*`` glob is checked on the
ASCII texts by ``endswith`` or ``startswith`` of the lower-cased text, and a ``*run*`` glob by its
literal's presence in the Set's answer. A search of a pattern whose DFA states a new text
has to build cost ~120 us a hit at 10,000 offenders; the check costs a few hundred ns.
Non-ASCII texts, which RE2's case folding can match to an ASCII glob (Kelvin sign for ``k``),
are searched as before.

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
  An entry's ``shape`` must say how that regex matches (rules.py takes it from glob_shape of
  the glob it compiled); tests hold the lookups to the regexes on random globs and texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import re2

from guardmail.core.glob_lookups import Lookups, looked_up
from guardmail.core.literals import glob_literal, regex_literals
from guardmail.core.regexes import Matcher, compile_regex, encodable, glob_regex, glob_shape

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
    """A compiled pattern, the literal every match of it contains ("" if none), its payload,
    for a glob of a plain ASCII run its shape (regexes.glob_shape), else None, and ``also``:
    ASCII runs, lower-cased, that every match contains too (literals.regex_literals): a text
    that lacks one of them is not searched."""

    regex: Matcher
    literal: str
    payload: T
    shape: tuple[str, str] | None = None
    also: tuple[str, ...] = ()


def glob_entry(glob: str, payload: T) -> Entry[T]:
    """``glob`` (fnmatch syntax) as an Entry: ValueError as glob_regex."""
    return Entry(glob_regex(glob), glob_literal(glob), payload, glob_shape(glob))


def regex_entry(source: str, payload: T) -> Entry[T]:
    """The regex ``source`` as an Entry: ValueError as compile_regex."""
    runs = regex_literals(source)
    also = tuple(run.lower() for run in runs if run.isascii())
    return Entry(compile_regex(source), runs[0] if runs else "", payload, also=also)


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


def _sure(entry: Entry[T]) -> bool:
    """Whether finding ``entry``'s literal in a text is the same as its glob matching: a
    ``*run*`` glob whose run is its literal (no NUL: a literal found in the joined texts then
    lies within one of them). The Set folds case as the glob's regex does, for any text."""
    return entry.shape is not None and entry.shape[0] == "contains" and _JOIN not in entry.literal


@dataclass(frozen=True, slots=True)
class _LiteralSet(Generic[T]):
    """One compiled RE2 Set: its pattern ``i + 1`` is literal ``i``, whose entries are
    ``groups[i]`` (to be checked) and ``sure[i]`` (matched when the literal is found); its
    pattern 0 is the empty literal, found in every text unless the search failed."""

    matcher: re2.Set
    groups: tuple[tuple[Entry[T], ...], ...]
    sure: tuple[tuple[Entry[T], ...], ...]

    def candidates(
        self, joined: str, checked: list[Entry[T]], searched: list[Entry[T]]
    ) -> list[Entry[T]]:
        """Add to ``checked`` the entries whose literal is in ``joined`` (the texts), or to
        ``searched`` all of them if RE2 could not tell; return those that match."""
        found = self.matcher.Match(joined)
        if not found or 0 not in found:
            # RE2 ran out of memory for this text (it answers "nothing" then): run them all.
            searched.extend(e for groups in (self.groups, self.sure) for g in groups for e in g)
            return []
        if len(found) == 1:
            return []  # only the empty literal: no candidate (most texts)
        groups = self.groups
        checked += [e for i in found if i for e in groups[i - 1]]
        sure = self.sure
        return [e for i in found if i for e in sure[i - 1]]


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
    return [
        _LiteralSet(
            matcher,
            tuple(tuple(e for e in g if not _sure(e)) for _, g in groups),
            tuple(tuple(e for e in g if _sure(e)) for _, g in groups),
        )
    ]


def _in_sets(
    entries: Iterable[Entry[T]], max_mem: int
) -> tuple[list[_LiteralSet[T]], list[Entry[T]]]:
    """``entries`` in literal Sets, and those to run always (no literal a Set can hold)."""
    keyed: list[tuple[str, Entry[T]]] = []
    shared: dict[str, int] = {}
    always: list[Entry[T]] = []
    for e in entries:
        if e.literal and encodable(e.literal):
            # ASCII equal up to case is one literal of the (case-insensitive) Set; other
            # scripts are kept as written (Python's lower() is not RE2's case folding).
            key = e.literal.lower() if e.literal.isascii() else e.literal
            keyed.append((key, e))
            shared[key] = shared.get(key, 0) + 1
        else:
            always.append(e)
    by_literal: dict[str, list[Entry[T]]] = {}
    for key, e in keyed:
        by_literal.setdefault(_least_shared(key, e.also, shared), []).append(e)
    groups = [(literal, tuple(group)) for literal, group in by_literal.items()]
    sets = _literal_sets(groups, max_mem, always)
    return sets, always


# A regex's other required run replaces its literal in the Set only if at least this long: a
# short run (``@``) is in nearly every text, however few patterns share it.
_MIN_RUN = 3


def _least_shared(key: str, also: tuple[str, ...], shared: dict[str, int]) -> str:
    """The Set literal for an entry whose literal is ``key``: ``key``, unless other entries
    share it and one of the entry's other required runs (``also``: every match holds each) of
    ``_MIN_RUN`` characters or more is the literal of fewer. Any required run is as exact a
    prefilter; a shared one makes every entry sharing it a candidate whenever one matches
    (``^ali[a4]s7x`` and ``^ali[a4]s8x`` both take ``ali``, ``@gmail.com`` every
    ``^name[0-9]*@gmail\\.com$``)."""
    best, count = key, shared[key]
    for run in also:
        if count < 2:
            break
        if len(run) >= _MIN_RUN and shared.get(run, 0) < count:
            best, count = run, shared.get(run, 0)
    return best


class PatternIndex(Generic[T]):
    """An immutable set of patterns with a literal prefilter. Build with ``from_entries``."""

    __slots__ = ("_sets", "_always", "_lookups", "_looked_sets", "_looked_always", "size")

    def __init__(
        self,
        sets: Sequence[_LiteralSet[T]],
        always: Sequence[Entry[T]],
        looked_up: Sequence[Entry[T]] = (),
        *,
        max_mem: int = SET_MAX_MEM,
    ) -> None:
        self._sets = tuple(sets)
        self._always = tuple(always)
        # Globs answered by lookups on ASCII texts, and searched as the others are (their own
        # Sets) on non-ASCII ones, which RE2's case folding may match to ASCII letters.
        self._lookups = Lookups(looked_up) if looked_up else None
        looked_sets, looked_always = _in_sets(looked_up, max_mem)
        self._looked_sets = tuple(looked_sets)
        self._looked_always = tuple(looked_always)
        in_sets = sum(len(g) for s in self._sets for g in s.groups + s.sure)
        self.size = len(self._always) + in_sets + len(looked_up)

    @classmethod
    def from_entries(
        cls, entries: Iterable[Entry[T]], *, max_mem: int = SET_MAX_MEM
    ) -> PatternIndex[T]:
        by_lookup: list[Entry[T]] = []
        rest: list[Entry[T]] = []
        for e in entries:
            (by_lookup if looked_up(e) else rest).append(e)
        sets, always = _in_sets(rest, max_mem)
        return cls(sets, always, by_lookup, max_mem=max_mem)

    def _looked(
        self, subjects: Sequence[str], found: list[Entry[T]], searched: list[Entry[T]]
    ) -> list[str]:
        """Add the looked-up globs the ASCII ``subjects`` match to ``found`` (each once), and
        those the others may match to ``searched``; return the others."""
        others: list[str] = []
        lookups = self._lookups
        if lookups is None:
            return others
        hits: list[Entry[T]] = []
        for text in subjects:
            if text.isascii():
                lookups.find(text.lower(), hits)
            else:
                others.append(text)
        if len(hits) > 1:
            # A glob found by two of the texts (as found and normalised) is one match.
            hits = list({id(e): e for e in hits}.values())
        found += hits
        if others:
            searched += self._looked_always
            checked: list[Entry[T]] = []
            for literals in self._looked_sets:
                literals.candidates(_JOIN.join(others), checked, searched)
            searched += checked
        return others

    def candidates(self, texts: Sequence[str]) -> list[Entry[T]]:
        """Entries that may match one of ``texts`` (a superset of those that do)."""
        subjects = [subject(text) for text in texts]
        looked: list[Entry[T]] = []
        self._looked(subjects, looked, looked)
        checked: list[Entry[T]] = []
        searched = list(self._always)
        sure = self._candidates(subjects, checked, searched)
        return looked + searched + checked + sure

    def _candidates(
        self, subjects: Sequence[str], checked: list[Entry[T]], searched: list[Entry[T]]
    ) -> list[Entry[T]]:
        sure: list[Entry[T]] = []
        if self._sets:
            joined = _JOIN.join(subjects)
            for literals in self._sets:
                sure.extend(literals.candidates(joined, checked, searched))
        return sure

    def matching(self, texts: Sequence[str]) -> list[Entry[T]]:
        """Entries whose regex matches the subject of one of ``texts``, each once."""
        # A short ASCII text is its own subject (nearly every one): no call for it.
        subjects = [t if len(t) <= MAX_TEXT and t.isascii() else subject(t) for t in texts]
        found: list[Entry[T]] = []
        if self._lookups is not None:
            looked_searched: list[Entry[T]] = []
            others = self._looked(subjects, found, looked_searched)
            if looked_searched:
                have = {id(e) for e in found}
                for entry in looked_searched:
                    if id(entry) not in have and _any_search(entry, others):
                        found.append(entry)
        checked: list[Entry[T]] = []
        searched = list(self._always)
        found += self._candidates(subjects, checked, searched)
        if checked:
            # A glob's shape is checked on the ASCII texts by plain string operations (a few
            # times cheaper than an RE2 search, whose DFA states a new text builds), and
            # searched on the others only; any other pattern is searched.
            plain = [t for t in subjects if t.isascii()]
            ascii_texts = [t.lower() for t in plain]
            others = [t for t in subjects if not t.isascii()]
            for entry in checked:
                if entry.shape is not None:
                    if _shape_matches(entry.shape, ascii_texts) or _any_search(entry, others):
                        found.append(entry)
                elif not entry.also:
                    searched.append(entry)
                elif _any_search(entry, _holding(entry.also, plain, ascii_texts, others)):
                    # One of a regex's short literals (``ali`` of ``^ali[a4]s12x``) is found
                    # in many texts; its others are not.
                    found.append(entry)
        for entry in searched:
            if _any_search(entry, subjects):
                found.append(entry)
        return found


# The helpers below loop rather than call any()/all() over generators: a first sighting's
# budget is a few microseconds, and each generator costs about one here.


def _shape_matches(shape: tuple[str, str], texts: list[str]) -> bool:
    """Whether the glob of ``shape`` (regexes.glob_shape) matches one of ``texts`` (ASCII,
    lower-cased)."""
    kind, run = shape
    if kind == "exact":
        return run in texts
    for t in texts:
        if kind == "suffix":
            if t.endswith(run):
                return True
        elif kind == "prefix":
            if t.startswith(run):
                return True
        elif run in t:
            return True
    return False


def _holding(
    runs: tuple[str, ...], plain: list[str], lowered: list[str], others: list[str]
) -> list[str]:
    """The texts that may match a pattern whose every match holds ``runs`` (ASCII, lower
    case): the ASCII ones (``plain``) whose lower-cased form (``lowered``: a case-insensitive
    search finds the same there) holds them all, and the others (unchecked: RE2 folds some
    non-ASCII letters to ASCII ones)."""
    held: list[str] = []
    for text, low in zip(plain, lowered, strict=True):
        for run in runs:
            if run not in low:
                break
        else:
            held.append(text)
    return held + others if others else held


def _any_search(entry: Entry[T], texts: list[str]) -> bool:
    search = entry.regex.search
    for text in texts:
        if search(text):
            return True
    return False
