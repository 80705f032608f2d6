"""Offenders and their alias patterns compiled into a RuleSet; ``decide`` judges an item.

Contracts:
- ``decide`` is pure: the same identities, rules and ``now`` give the same Verdict.
- Every identity is compared in its normalised and confusable-folded forms (core/identity.py,
  core/confusables.py), so case, sub-address tags, Gmail dots, punycode, trailing dots, quoting,
  comments, invisible characters and homoglyphs do not let an offender through. Globs and
  regexes also see its ASCII look-alike form (``ascii_lookalike``): a pattern written in ASCII
  cannot be folded, so the identity is brought to ASCII instead, and a Match then says what it
  looks like.
- Cost does not grow linearly with the number of rules: exact addresses, JIDs, domains and plain
  display names are hash lookups; globs and regexes sit behind a literal prefilter, one RE2
  Set pass over the identity's forms (patterns.py).
- Globs and regexes run on RE2 (regexes.py), in time linear in the (bounded) identity whatever
  was written. ``check_pattern`` and ``check_display_name`` (offender_patterns.py) refuse, with a
  sentence, what RE2 cannot run and what would match anyone (``*``, ``*@*``, ``re:.*``,
  ``re:^``): the config edge calls them, so a RuleSet is only ever built from patterns that
  passed.
- When several offenders match, the strongest action wins (block over quarantine); the Verdict
  names the first identity (in header order) that produced that action, and keeps every match.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from guardmail.core.aliases import Suspicion
from guardmail.core.confusables import fold
from guardmail.core.forms import MAX_REMEMBERED, forget, forms_of, name_forms
from guardmail.core.identity import (
    normalize_address,
    normalize_display_name,
    normalize_domain,
    normalize_jid,
)
from guardmail.core.impersonation import Impersonation
from guardmail.core.item import Identity
from guardmail.core.offender_patterns import glob_entries, pattern_entries
from guardmail.core.patterns import Entry, PatternIndex

_GLOB_CHARS = frozenset("*?[")


class Action(enum.StrEnum):
    """What becomes of an item. ``review`` is never a rule's action: the pipeline gives it to an
    item no rule matched whose sender looks like an offender's alias (core/aliases.py), and
    only on a source that can hold items for review; it is never blocked and never warned."""

    PASS = "pass"
    REVIEW = "review"
    QUARANTINE = "quarantine"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.PASS: 0, Action.REVIEW: 1, Action.QUARANTINE: 2, Action.BLOCK: 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class OffenderRule:
    """One offender as the rules see it (built from settings at the config edge)."""

    name: str
    addresses: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    display_names: tuple[str, ...] = ()
    jids: tuple[str, ...] = ()
    action: Action = Action.QUARANTINE


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """One rule of one offender that matched one identity.

    ``rule`` reads like the config (``patterns[1]: re:^st[a4]lker[0-9]*@``); ``header`` is where
    the identity came from (an Identity's ``source``: ``From``, ``From (display name)`` ...);
    ``value`` the identity as found; ``normalized`` its normalised form; ``looks_like``, when
    the identity holds look-alike letters, what it looks like and which letters those are
    (``looks like stalker1@gmail.com: Cyrillic а (U+0430)``), else "".
    """

    offender: str
    action: Action
    rule: str
    header: str
    value: str
    normalized: str
    looks_like: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """``suspicion``: for ``review``, the offender the sender may be an alias of, and why.
    ``impersonation``: for mail no rule matched that is forged in the person's own name (or a
    bounce of such mail), what it is and why (core/impersonation.py); it names no offender."""

    action: Action
    decided_at: datetime
    matches: tuple[Match, ...] = ()
    suspicion: Suspicion | None = None
    impersonation: Impersonation | None = None

    @property
    def primary(self) -> Match | None:
        """The match that explains the action (first in header order with the strongest action)."""
        for m in self.matches:
            if m.action is self.action:
                return m
        return None

    @property
    def offender(self) -> str | None:
        return self.primary.offender if self.primary else None


@dataclass(frozen=True, slots=True)
class _Ref:
    """One configured rule: offender index, field, position and value. Its text (``rule``) is
    made when asked, on a match: an ISP's 1,000 tenants x 10 addresses kept 10,000 of them
    made up front (~0.7 MB, issue 27). ``value`` is the config's own string, not a copy."""

    offender: int
    kind: str  # the OffenderRule field: addresses, jids, domains, patterns, display_names
    index: int
    value: str

    @property
    def rule(self) -> str:
        return f"{self.kind}[{self.index}]: {self.value}"


@dataclass(frozen=True, slots=True)
class _Found:
    """One rule an identity matched, with what a Match tells about the identity."""

    ref: _Ref
    value: str
    normalized: str
    looks_like: str


class RuleSet:
    """Compiled offender rules. Immutable; build a new one when the offender list changes."""

    __slots__ = (
        "offenders",
        "_exact",
        "_domains",
        "_names",
        "_addr_patterns",
        "_name_patterns",
        "_addr_memo",
        "_name_memo",
        "_memo_generation",
    )

    def __init__(self, offenders: Sequence[OffenderRule]) -> None:
        self.offenders = tuple(offenders)
        # What each (address, is a JID) and each display name matched: a repeat sender is a
        # lookup or two.
        self._addr_memo: dict[tuple[str, bool], tuple[_Found, ...]] = {}
        self._name_memo: dict[str, tuple[_Found, ...]] = {}
        self._memo_generation = _generation
        # Built in lists (appending to a tuple would copy it: quadratic when many rules share a
        # key), kept as tuples: most keys have one rule, and a list of one costs 40 bytes more.
        exact: dict[str, list[_Ref]] = {}
        domains: dict[str, list[_Ref]] = {}
        names: dict[str, list[_Ref]] = {}
        addr_entries: list[Entry[_Ref]] = []
        name_entries: list[Entry[_Ref]] = []
        for i, off in enumerate(self.offenders):
            for n, addr in enumerate(off.addresses):
                _add_exact(exact, addr, _Ref(i, "addresses", n, addr))
            for n, jid in enumerate(off.jids):
                _add_exact(exact, jid, _Ref(i, "jids", n, jid))
            for n, dom in enumerate(off.domains):
                key = fold(normalize_domain(dom))
                if key:
                    domains.setdefault(key, []).append(_Ref(i, "domains", n, dom))
            for n, pat in enumerate(off.patterns):
                addr_entries.extend(pattern_entries(pat, _Ref(i, "patterns", n, pat)))
            for n, name in enumerate(off.display_names):
                ref = _Ref(i, "display_names", n, name)
                if _GLOB_CHARS.isdisjoint(name):
                    key = fold(normalize_display_name(name))
                    names.setdefault(key, []).append(ref)
                else:
                    name_entries.extend(glob_entries(normalize_display_name(name), ref))
        self._exact = _frozen(exact)
        self._domains = _frozen(domains)
        self._names = _frozen(names)
        self._addr_patterns = PatternIndex.from_entries(addr_entries)
        self._name_patterns = PatternIndex.from_entries(name_entries)

    def fingerprint(self) -> str:
        """SHA-256 of the offender rules as configured: equal for equal rules, across
        processes (a source keeps it to tell, at start, whether the rules changed since it
        last judged its mail)."""
        return hashlib.sha256(repr(self.offenders).encode("utf-8")).hexdigest()

    def matches(self, identity: Identity) -> tuple[_Found, ...]:
        """Every rule this identity matches, with its value as found and normalised.

        Memoised per RuleSet, the address apart from the display name (From's address comes
        back as Reply-To's, with no name; a name comes back with other addresses): bounded,
        each memo emptied when full (a stream of made-up senders costs what it costs without
        it), a sender longer than ``forms.MAX_REMEMBERED`` never kept; ``clear_caches``
        empties them too."""
        if self._memo_generation != _generation:
            self._addr_memo.clear()
            self._name_memo.clear()
            self._memo_generation = _generation
        found: tuple[_Found, ...] = ()
        if identity.address:
            key = (identity.address, identity.source == "jid")
            known = self._addr_memo.get(key)
            if known is None:
                known = self._address_matches(*key)
                _remember(self._addr_memo, key, known, len(identity.address))
            found = known
        if identity.display_name:
            named = self._name_memo.get(identity.display_name)
            if named is None:
                named = self._name_matches(identity.display_name)
                _remember(self._name_memo, identity.display_name, named, len(identity.display_name))
            found = found + named if found else named
        return found

    def _address_matches(self, address: str, is_jid: bool) -> tuple[_Found, ...]:
        forms = forms_of(address, is_jid)
        if forms is None:
            return ()
        # Most senders match nothing: no copies, generators or tuples for them (a first
        # sighting's budget is a few microseconds).
        exact = self._exact.get(forms.folded)
        refs = list(exact) if exact else []
        domains = self._domains
        for suffix in forms.domain_keys:
            hit = domains.get(suffix)
            if hit:
                refs += hit
        hits = self._addr_patterns.matching(forms.texts)
        if hits:
            refs += [e.payload for e in hits]
        if not refs:
            return ()
        normalized, note = forms.normalized, forms.looks_like
        return tuple([_Found(r, address, normalized, note) for r in _ordered(refs)])

    def _name_matches(self, display_name: str) -> tuple[_Found, ...]:
        name = name_forms(display_name)
        exact = self._names.get(name.folded)
        refs = list(exact) if exact else []
        hits = self._name_patterns.matching(name.texts)
        if hits:
            refs += [e.payload for e in hits]
        if not refs:
            return ()
        normalized, note = name.normalized, name.looks_like
        return tuple([_Found(r, display_name, normalized, note) for r in _ordered(refs)])


_K = TypeVar("_K")


def _add_exact(exact: dict[str, list[_Ref]], value: str, ref: _Ref) -> None:
    keys = {n.key for n in (normalize_address(value), normalize_jid(value)) if n is not None}
    for key in keys:
        exact.setdefault(key, []).append(ref)


def _frozen(lists: dict[str, list[_Ref]]) -> dict[str, tuple[_Ref, ...]]:
    return {key: tuple(refs) for key, refs in lists.items()}


def _remember(
    memo: dict[_K, tuple[_Found, ...]], key: _K, found: tuple[_Found, ...], size: int
) -> None:
    if size > MAX_REMEMBERED:
        return  # junk no sender repeats, and which would hold megabytes
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = found


def _ordered(refs: list[_Ref]) -> list[_Ref]:
    """Config order (offender, then rule), so a verdict does not depend on hash order."""
    if len(refs) < 2:
        return refs
    return sorted(set(refs), key=lambda r: (r.offender, r.rule))


# Addresses, and display names, a RuleSet remembers the matches of, at most each (~1 MB when
# both are full, per tenant).
MEMO_SIZE = 4096
# Bumped by clear_caches: every RuleSet forgets its memo at its next decision.
_generation = 0


def clear_caches() -> None:
    """Forget what was memoised per sender (normal forms, each RuleSet's matches): benchmarks
    measure first sightings with this. Per-domain memos stay, as domains repeat across
    senders."""
    global _generation
    _generation += 1
    forget()


def decide(identities: Iterable[Identity], rules: RuleSet, *, now: datetime) -> Verdict:
    """Judge an item by the identities it claims. Pure; ``now`` is recorded in the Verdict."""
    found: list[Match] = []
    seen: set[tuple[int, str, str]] = set()
    for identity in identities:
        for hit in rules.matches(identity):
            key = (hit.ref.offender, hit.ref.rule, identity.source)
            if key in seen:
                continue
            seen.add(key)
            off = rules.offenders[hit.ref.offender]
            found.append(
                Match(
                    offender=off.name,
                    action=off.action,
                    rule=hit.ref.rule,
                    header=identity.source,
                    value=hit.value,
                    normalized=hit.normalized,
                    looks_like=hit.looks_like,
                )
            )
    if not found:
        return Verdict(action=Action.PASS, decided_at=now)
    action = max((m.action for m in found), key=lambda a: a.severity)
    return Verdict(action=action, decided_at=now, matches=tuple(found))
