"""Globs of a plain ASCII run answered by dict lookups instead of a search (patterns.py).

An exact glob, a ``*run`` glob whose run holds its first character nowhere else (``*@domain``)
and a ``run*`` glob whose run holds its last character nowhere else (``name *``): an ASCII text,
lower-cased, matches the first when it is the run, the second when its part from the last
place of that character is the run, the third when its part up to the first place is. So a
text costs one lookup for each such character some glob has (``@`` and `` `` in practice),
whatever the number of globs, and a hit costs no RE2 DFA states built on first use.

Contracts:
- Only for ASCII texts, lower-cased: RE2 (whose case folding the globs' regexes use) matches
  some non-ASCII letters to ASCII ones (Kelvin sign for ``k``); patterns.py searches those.
- ``Lookups.find`` appends exactly the entries whose glob matches (tests hold it to the
  regexes on random globs and texts). Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from guardmail.core.patterns import Entry

T = TypeVar("T")


def looked_up(entry: Entry[T]) -> bool:
    """Whether ``Lookups`` answers ``entry`` on ASCII texts: an exact glob, or a suffix
    (prefix) glob whose run holds its first (last) character nowhere else (``*@domain``,
    ``name *``): the text then ends with the run just when it does from the last place that
    character is, one lookup."""
    if entry.shape is None:
        return False
    kind, run = entry.shape
    if kind == "suffix":
        return run[0] not in run[1:]
    if kind == "prefix":
        return run[-1] not in run[:-1]
    return kind == "exact"


class Lookups(Generic[T]):
    """The globs ``looked_up`` takes, in dicts: by run, and for suffixes (prefixes) under the
    character they start (end) with."""

    __slots__ = ("exact", "suffixes", "prefixes", "_suffix_runs", "_prefix_runs")

    def __init__(self, entries: Iterable[Entry[T]]) -> None:
        self.exact: dict[str, list[Entry[T]]] = {}
        self.suffixes: dict[str, dict[str, list[Entry[T]]]] = {}
        self.prefixes: dict[str, dict[str, list[Entry[T]]]] = {}
        for e in entries:
            if e.shape is None:
                continue
            kind, run = e.shape
            if kind == "exact":
                self.exact.setdefault(run, []).append(e)
            elif kind == "suffix":
                self.suffixes.setdefault(run[0], {}).setdefault(run, []).append(e)
            else:
                self.prefixes.setdefault(run[-1], {}).setdefault(run, []).append(e)
        # Walked at every lookup: tuples, not a dict's items() built each time.
        self._suffix_runs = tuple(self.suffixes.items())
        self._prefix_runs = tuple(self.prefixes.items())

    def find(self, key: str, out: list[Entry[T]]) -> None:
        """Append to ``out`` the globs ``key`` (an ASCII text, lower-cased) matches."""
        hit = self.exact.get(key)
        if hit:
            out += hit
        for ch, runs in self._suffix_runs:
            i = key.rfind(ch)
            if i >= 0:
                hit = runs.get(key[i:])
                if hit:
                    out += hit
        for ch, runs in self._prefix_runs:
            i = key.find(ch)
            if i >= 0:
                hit = runs.get(key[: i + 1])
                if hit:
                    out += hit
