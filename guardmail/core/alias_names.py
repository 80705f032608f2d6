"""Display names compared: the name forms of core/aliases.py's ``display_name`` signal.

``compare_names`` says how a new sender's name tokens resemble an offender's (the same full
name, a letter apart, a name with an initial, a handle, the surname, a first name), as a
``Signal`` with the weight of the table in core/aliases.py. ``name_keys`` and ``deletions``
are the index keys that find the candidates to compare (a token, and its one-letter
deletions), so a comparison happens only between names that share one.

Contracts: pure; ``levenshtein`` fills a band of the table only; every function is linear in
its (bounded) inputs or quadratic in their token counts (at most ``MAX_TOKENS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_NEAR_MIN = 5  # letters a token needs before "a letter apart" counts as the same


def weight(likelihood_ratio: float) -> float:
    """A signal's weight: the natural log of its likelihood ratio, to one decimal."""
    return round(math.log(likelihood_ratio), 1)


W_NAME_FULL = weight(2000)
W_NAME_NEAR = weight(500)
W_NAME_INITIAL = weight(1500)
W_NAME_HANDLE = weight(300)
W_NAME_SURNAME = weight(20)
W_NAME_FIRST = weight(3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """One reason a sender resembles an offender: its name, log-likelihood weight, and why."""

    signal: str
    weight: float
    why: str


def levenshtein(a: str, b: str, limit: int = 2) -> int:
    """Edit distance of ``a`` and ``b``, or ``limit + 1`` if it is more than ``limit``
    (cost O(len * limit): only a band of the table is filled)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [limit + 1] * len(b)
        lo, hi = max(1, i - limit), min(len(b), i + limit)
        for j in range(lo, hi + 1):
            cost = 0 if ca == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return min(prev[len(b)], limit + 1)


def deletions(text: str) -> set[str]:
    return {text[:i] + text[i + 1 :] for i in range(len(text))}


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one insertion, deletion or substitution (or
    not at all): ``levenshtein(a, b, 1) <= 1`` in one linear pass."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def name_keys(tokens: tuple[str, ...]) -> frozenset[str]:
    """Every token and, for tokens of 5+ letters, its one-letter deletions: two names share a
    key exactly when some token of one is the same as, or a letter from, one of the other's."""
    keys: set[str] = set()
    for t in tokens:
        keys.add(t)
        if len(t) >= _NEAR_MIN:
            keys |= deletions(t)
    return frozenset(keys)


_RANK = {"exact": 0, "near": 1, "initial": 2}


def _token_match(q: str, k: str) -> str:
    """``exact``, ``near`` (a letter apart, 5+ letters), ``initial`` or ""."""
    if q == k:
        return "exact"
    if min(len(q), len(k)) >= _NEAR_MIN and _one_edit(q, k):
        return "near"
    if (len(q) == 1 or len(k) == 1) and q[:1] == k[:1]:
        return "initial"
    return ""


def match_tokens(query: tuple[str, ...], known: tuple[str, ...]) -> list[tuple[int, str, int]]:
    """(index in query, match kind, index in known) of each query token that matches a known
    token not used yet: the best kind (``_RANK``), then the first. One pass per token, no list
    or sort: this runs for every offender sharing a name key."""
    used: set[int] = set()
    out: list[tuple[int, str, int]] = []
    for i, q in enumerate(query):
        best_rank, best_j, best_kind = 3, -1, ""
        for j, k in enumerate(known):
            if j in used:
                continue
            m = "exact" if q == k else _token_match(q, k)
            if m and _RANK[m] < best_rank:
                best_rank, best_j, best_kind = _RANK[m], j, m
                if best_rank == 0:
                    break
        if best_kind:
            used.add(best_j)
            out.append((i, best_kind, best_j))
    return out


def compare_names(query: tuple[str, ...], known: tuple[str, ...]) -> Signal | None:
    """How ``query`` (a new sender's name tokens) resembles ``known`` (an offender's)."""
    found = name_match(query, known)
    return None if found is None else name_signal(query, known, found)


# A name comparison's outcome: (weight, form, the matched token of ``known`` for "surname").
NameMatch = tuple[float, str, int]


def name_match(query: tuple[str, ...], known: tuple[str, ...]) -> NameMatch | None:
    """``compare_names``'s weight and form without its explanation: an offender's names are
    each compared, and only the best one's ``Signal`` is made (``name_signal``)."""
    kinds = match_tokens(query, known)
    full = [j for _, kind, j in kinds if kind in ("exact", "near")]
    if not full:
        return None
    initials = sum(1 for _, kind, _ in kinds if kind == "initial")
    shorter = min(len(query), len(known))
    if len(full) >= 2 and len(full) + initials >= shorter:
        if all(kind == "exact" for _, kind, _ in kinds):
            return W_NAME_FULL, "full", 0
        return W_NAME_NEAR, "near", 0
    # Every word of 3+ letters of the query must be matched for a name with an initial: "David
    # B. Thompson" is not "David Brown" (the SpamAssassin corpus had several such; bench/README).
    if len(full) == 1 and initials and len(full) + initials >= shorter:
        matched = {i for i, _, _ in kinds}
        if not any(len(q) >= 3 and i not in matched for i, q in enumerate(query)):
            return W_NAME_INITIAL, "initial", 0
    if len(query) == 1 and len(known) == 1 and len(query[0]) >= 6 and kinds[0][1] == "exact":
        return W_NAME_HANDLE, "handle", 0
    if full[0] > 0:
        return W_NAME_SURNAME, "surname", full[0]
    return W_NAME_FIRST, "first", 0


def name_signal(query: tuple[str, ...], known: tuple[str, ...], found: NameMatch) -> Signal:
    """The ``Signal`` of a ``name_match``, its explanation written."""
    weight, form, j = found
    spelled = " ".join(query)
    known_text = " ".join(known)
    # Only the form's own explanation is written (a dict of all six wrote six f-strings a
    # call, and every offender sharing a first name makes one).
    if form == "full":
        why = f"the name {spelled!r} is the offender's {known_text!r}"
    elif form == "near":
        why = f"the name {spelled!r} is a letter from the offender's {known_text!r}"
    elif form == "initial":
        why = f"the name {spelled!r} is the offender's {known_text!r} with an initial"
    elif form == "handle":
        why = f"the one-word name {spelled!r} is the offender's"
    elif form == "surname":
        why = f"the name {spelled!r} shares the offender's surname {known[j]!r}"
    elif form == "first":
        why = f"the name {spelled!r} shares only a first name with {known_text!r}"
    else:
        raise KeyError(form)  # as the dict did: a form name_match never gives
    return Signal(signal="display_name", weight=weight, why=why)
