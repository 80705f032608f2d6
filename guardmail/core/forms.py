"""The forms an identity is compared in, memoised: an address's (``forms_of``) and a display
name's (``name_forms``).

Contracts:
- Pure functions of their input (memoised, bounded): the same string gives equal forms.
- ``texts`` hold the identity as found, normalised, confusable-folded and its ASCII look-alike
  (core/identity.py), deduplicated in that order: every pattern is tried on each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from guardmail.core.confusables import ascii_lookalike, fold, lookalike_letters
from guardmail.core.identity import (
    domain_suffixes,
    normalize_address,
    normalize_display_name,
    normalize_jid,
)


@dataclass(frozen=True, slots=True)
class Forms:
    """The strings an identity is compared in: as found, normalised, confusable-folded and its
    ASCII look-alike (``texts``, for patterns), and what it looks like (``looks_like``)."""

    texts: tuple[str, ...]
    folded: str
    normalized: str
    domain_keys: tuple[str, ...]
    looks_like: str = ""


# Senders repeat (From and Reply-To, the same offender all day): normalising is the bulk of a
# decision's cost, and it depends on the string alone, so it is memoised (bounded).
@lru_cache(maxsize=16384)
def forms_of(address: str, is_jid: bool) -> Forms | None:
    found = address.strip().casefold()
    norm = normalize_jid(found) if is_jid else normalize_address(found)
    if norm is None:
        return None
    key = norm.key
    # The look-alike form is ASCII (when the letters are), so patterns written in ASCII see
    # what it looks like.
    twin = ascii_lookalike(norm.address)
    texts = tuple(dict.fromkeys((found, norm.address, key, twin)))
    return Forms(
        texts=texts,
        folded=key,
        normalized=norm.address,
        domain_keys=domain_keys(norm.domain),
        # As found for fullwidth letters (normalising made them ASCII), normalised for
        # punycode (decoding revealed them).
        looks_like=lookalike_note(twin, found, norm.address),
    )


# Domains repeat even where senders do not (every new gmail.com sender): their folded suffixes
# are memoised apart from the sender's forms (bounded).
@lru_cache(maxsize=4096)
def domain_keys(domain: str) -> tuple[str, ...]:
    return domain_suffixes(fold(domain))


def lookalike_note(twin: str, *texts: str) -> str:
    """``looks like <twin>: <letters>`` if ``texts`` hold look-alike letters, else ""."""
    letters = lookalike_letters(*texts)
    return f"looks like {twin}: {', '.join(letters)}" if letters else ""


@dataclass(frozen=True, slots=True)
class NameForms:
    """A display name's forms, as ``Forms`` for an address."""

    normalized: str
    folded: str
    texts: tuple[str, ...]
    looks_like: str


@lru_cache(maxsize=16384)
def name_forms(display_name: str) -> NameForms:
    name = normalize_display_name(display_name)
    folded = fold(name)
    twin = ascii_lookalike(name)
    texts = tuple(dict.fromkeys((name, folded, twin)))
    return NameForms(name, folded, texts, lookalike_note(twin, display_name))
