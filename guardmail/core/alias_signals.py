"""The signals of single features: local parts, display names, contacts in the text, timing.

Each function looks one feature of a new message up in ``AliasIndex``'s tables (core/aliases.py)
and calls ``hit(offender, signal)`` for each offender it points to (``timing`` returns its
signal instead: it never makes a candidate, only adds to other signals). The weights are in
core/alias_weights.py and core/alias_names.py.

Contracts: pure; bounded work: hash lookups per feature value (a local part's one-letter
deletions included), and name comparisons only with offenders sharing a name key (the index
keeps at most ``MAX_NAMES_PER_OFFENDER`` names of each, core/aliases.py); local parts shorter
than 4 letters or naming a role (``ROLE_LOCALS``) never score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from guardmail.core.alias_features import Features
from guardmail.core.alias_names import (
    W_NAME_INITIAL,
    NameMatch,
    Signal,
    deletions,
    name_keys,
    name_match,
    name_signal,
)
from guardmail.core.alias_weights import (
    TIMING_MIN_MESSAGES,
    TIMING_SHARE,
    W_BODY_ADDRESS,
    W_BODY_CONTACT,
    W_LOCAL,
    W_LOCAL_LONG,
    W_LOCAL_NEAR,
    W_LOCAL_SHORT,
    W_LOOKALIKE,
    W_TIMING,
)

# Local parts that name a role, not a person: anyone may write from them.
ROLE_LOCALS = frozenset(
    {
        "admin",
        "contact",
        "hello",
        "help",
        "info",
        "mail",
        "mailer",
        "noreply",
        "office",
        "postmaster",
        "sales",
        "support",
        "team",
        "user",
        "webmaster",
    }
)


@dataclass(frozen=True, slots=True)
class Ref:
    """An index key's reference to an offender: who, and when (None: from the config)."""

    offender: str
    seen_at: datetime | None


# Called with each offender a signal points to; the index keeps the strongest per signal.
Hit = Callable[[str, Signal], None]
# Feature value -> the offenders' references (AliasIndex's tables).
Table = Mapping[str, tuple[Ref, ...]]
# An offender's display name (tokens) and its name keys (compared only if they share one).
NameEntry = tuple[tuple[str, ...], frozenset[str]]


def score_local(local: str, hit: Hit, *, by_local: Table, by_deletion: Table) -> None:
    """The sender's local-part letters: an offender's exactly, or one letter from them."""
    if len(local) < 4 or local in ROLE_LOCALS:
        return
    exact = {r.offender for r in by_local.get(local, ())}
    weight = W_LOCAL_LONG if len(local) >= 8 else W_LOCAL if len(local) >= 5 else W_LOCAL_SHORT
    for off in sorted(exact):
        hit(
            off,
            Signal(
                signal="local_part",
                weight=weight,
                why=f"the address's letters {local!r} are the offender's",
            ),
        )
    if len(local) < 6:
        return
    near: dict[str, None] = {}
    for key in (local, *deletions(local)):
        for r in (*by_deletion.get(key, ()), *by_local.get(key, ())):
            if r.offender not in exact:
                near[r.offender] = None
    for off in near:
        hit(
            off,
            Signal(
                signal="local_part",
                weight=W_LOCAL_NEAR,
                why=f"the address's letters {local!r} are one letter from the offender's",
            ),
        )


def score_names(
    features: Features, hit: Hit, *, by_token: Table, names: Mapping[str, tuple[NameEntry, ...]]
) -> None:
    """The best name comparison with each offender sharing a name key, and the look-alike
    signal beside a strong one."""
    candidates: dict[str, None] = {}
    queries = [(q, name_keys(q)) for q in features.names]
    for _, keys in queries:
        for key in keys:
            for r in by_token.get(key, ()):
                candidates[r.offender] = None
    for off in candidates:
        # The first of the strongest comparisons; its explanation is written only for it.
        best: tuple[NameMatch, tuple[str, ...], tuple[str, ...]] | None = None
        for query, qkeys in queries:
            for known, kkeys in names.get(off, ()):
                if qkeys.isdisjoint(kkeys):
                    continue  # no token alike: name_match would say None
                m = name_match(query, known)
                if m is not None and (best is None or m[0] > best[0][0]):
                    best = (m, query, known)
        if best is None:
            continue
        signal = name_signal(best[1], best[2], best[0])
        hit(off, signal)
        if features.lookalike and signal.weight >= W_NAME_INITIAL:
            hit(
                off,
                Signal(
                    signal="lookalike",
                    weight=W_LOOKALIKE,
                    why="the name is written with look-alike letters",
                ),
            )


def score_contacts(
    contacts: tuple[str, ...], hit: Hit, *, by_contact: Table, by_address: Table
) -> None:
    """The contacts a message's text gives (``kind:value``): an offender's signature's, or
    (``mail:``) an offender's address."""
    for contact in contacts:
        kind, _, value = contact.partition(":")
        what = {"tel": "phone number", "at": "handle", "mail": "address"}.get(kind, kind)
        for r in by_contact.get(contact, ()):
            hit(
                r.offender,
                Signal(
                    signal="body_contact",
                    weight=W_BODY_CONTACT,
                    why=f"the text gives the {what} {value!r} of the offender's signature",
                ),
            )
        if kind == "mail":
            for r in by_address.get(value, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="body_address",
                        weight=W_BODY_ADDRESS,
                        why=f"the text names the offender's address {value}",
                    ),
                )


def timing(hours: tuple[int, ...] | None, hour: int) -> Signal | None:
    """The timing signal for a message sent at ``hour`` (UTC) by an offender whose messages
    came at ``hours`` (a count per hour of the day); None without enough of them near it."""
    if hours is None:
        return None
    total = sum(hours)
    near = hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24]
    if total < TIMING_MIN_MESSAGES or near < TIMING_SHARE * total:
        return None
    return Signal(
        signal="timing",
        weight=W_TIMING,
        why=f"sent at {hour:02}h UTC, the hours of {near} of the offender's {total} messages",
    )
