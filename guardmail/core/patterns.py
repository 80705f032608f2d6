r"""Many globs and regexes matched at once, in bounded time, at a cost that does not grow with
their number.

Each pattern is reduced to a *required literal*: a run of plain characters that every string it
matches must contain. The pattern is filed under one 4-gram of that literal, the one shared by the
fewest other patterns. To match a string we look up the string's own 4-grams and test only the
patterns filed under them, plus the few ("residue") whose literal is shorter than four
characters. This is the
prefilter that code search engines and RE2::Set use, kept small enough to read.

Contracts:
- Entries hold patterns compiled by regexes.py (RE2: linear time whatever the pattern).
- Patterns see at most ``MAX_TEXT`` characters of a text (``subject``): a longer text is seen as
  its first and last ``MAX_TEXT // 2`` characters joined, so patterns anchored at either end
  (``*@domain``, ``^name``) still see that end. No real address comes near the limit (RFC 5321
  caps a path at 256 octets); the bound keeps a hostile header from multiplying the work of
  every candidate pattern. Lone surrogates (undecodable header bytes) are seen as U+FFFD.
- ``PatternIndex.matching(texts)`` returns exactly the entries whose regex matches the subject of
  one of ``texts``: the prefilter only skips entries that cannot match (tests compare against a
  loop).
- Entries match with ``search`` semantics on their compiled regex; anchoring is the pattern's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from guardmail.core.regexes import Matcher, encodable

T = TypeVar("T")

MAX_TEXT = 1024


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A compiled pattern, the literal it was filed under (or "" for residue), and its payload."""

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


def grams(text: str, size: int) -> set[str]:
    """Every substring of ``text`` of length ``size``."""
    return {text[i : i + size] for i in range(len(text) - size + 1)}


GRAM = 4


def lookup_grams(texts: Iterable[str]) -> frozenset[str]:
    """The lower-case 4-grams of the subjects of ``texts``: what an index looks up for them.

    An address's domain repeats across senders, so the grams from its last ``@`` on are
    memoised: the grams of ``s`` are those of ``s[:p + GRAM - 1]`` and of ``s[p:]`` for any
    split ``p`` (a window starting before ``p`` ends inside the first part)."""
    out: set[str] = set()
    for text in texts:
        low = (text if len(text) <= MAX_TEXT and text.isascii() else subject(text)).lower()
        at = low.rfind("@")
        if at >= 0:
            out |= _tail_grams(low[at + 1 :])
            low = low[: at + GRAM]
        out |= {low[i : i + GRAM] for i in range(len(low) - GRAM + 1)}
    return frozenset(out)


# One entry per domain seen (bounded: a stream of made-up domains only evicts).
@lru_cache(maxsize=4096)
def _tail_grams(tail: str) -> frozenset[str]:
    return frozenset([tail[i : i + GRAM] for i in range(len(tail) - GRAM + 1)])


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
            joined = "\x00".join(map(subject, texts)).lower()  # NUL: no literal spans two texts
            out.extend(e for lit, e in self._residue if lit in joined)
        if not self._by_gram:
            return out
        have = lookup_grams(texts) if text_grams is None else text_grams
        # The intersection runs in C over the text's few grams, not over the index.
        for gram in self._gram_keys.intersection(have):
            out += [e for need, e in self._by_gram[gram] if need <= have]
        return out

    def matching(self, texts: Sequence[str], text_grams: Set[str] | None = None) -> list[Entry[T]]:
        """Entries whose regex matches the subject of one of ``texts``, in candidate order."""
        found: list[Entry[T]] = []
        candidates = self.candidates(texts, text_grams)
        if not candidates:
            return found
        subjects = [subject(text) for text in texts]
        for entry in candidates:
            search = entry.regex.search
            for text in subjects:
                if search(text):
                    found.append(entry)
                    break
        return found
