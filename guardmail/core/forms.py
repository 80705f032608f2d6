"""The forms an identity is compared in, memoised: an address's (``forms_of``) and a display
name's (``name_forms``).

Contracts:
- Pure functions of their input (memoised, bounded): the same string gives equal forms, the
  ones computed the long way on whole strings with no memo (tests/unit/test_forms.py holds
  them to it on any text).
- ``texts`` hold the identity as found, normalised, confusable-folded and its ASCII look-alike
  (core/identity.py), deduplicated in that order: every pattern is tried on each of them.
- Built piecewise, which gives the same strings: ``fold`` and ``ascii_lookalike`` of
  ``local@domain`` are those of the local part and of the domain joined by ``@``, and those of
  a normalised display name those of its words joined by spaces (``@`` and the space fold to
  themselves, start no composition and end none; tests hold it on any text). So a domain's
  forms and a name word's fold are memoised apart: they repeat far more than whole senders.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from guardmail.core.confusables import ascii_lookalike, fold, lookalike_letters
from guardmail.core.identity import (
    address_parts,
    domain_suffixes,
    jid_parts,
    normalize_display_name,
)


# NamedTuples, not frozen dataclasses: as immutable (they are shared by the memos), a third of
# the cost to build (~0.3 against ~0.6-1 us here), and a first sighting builds two or three.
class Forms(NamedTuple):
    """The strings an identity is compared in: as found, normalised, confusable-folded and its
    ASCII look-alike (``texts``, for patterns), and what it looks like (``looks_like``)."""

    texts: tuple[str, ...]
    folded: str
    normalized: str
    domain_keys: tuple[str, ...]
    looks_like: str = ""


class DomainForms(NamedTuple):
    """A normalised domain's fold, ASCII look-alike and folded suffixes (``domain_suffixes``)."""

    folded: str
    twin: str
    keys: tuple[str, ...]


# Senders repeat (From and Reply-To, the same offender all day): normalising is the bulk of a
# decision's cost, and it depends on the string alone, so it is memoised, bounded in entries and
# in what one entry may hold: a sender's text longer than ``MAX_REMEMBERED`` (no real address
# or name comes near it; a header can hold a megabyte) is worked out again each time, else
# 16,384 such made-up senders would keep gigabytes.
MAX_REMEMBERED = 1024


def forms_of(address: str, is_jid: bool) -> Forms | None:
    """The forms of an address (``is_jid``: a JID's), None if it is not one."""
    if len(address) > MAX_REMEMBERED:
        return _forms_of(address, is_jid)
    return _forms_memo(address, is_jid)


def name_forms(display_name: str) -> NameForms:
    """The forms of a display name."""
    if len(display_name) > MAX_REMEMBERED:
        return _name_forms(display_name)
    return _name_memo(display_name)


def forget() -> None:
    """Empty the memos of whole senders (benchmarks measure first sightings so); the domain
    and name-word memos stay, as those repeat across senders."""
    _forms_memo.cache_clear()
    _name_memo.cache_clear()


def _forms_of(address: str, is_jid: bool) -> Forms | None:
    found = address.strip().casefold()
    parts = jid_parts(found) if is_jid else address_parts(found)
    if parts is None:
        return None
    local, domain = parts
    dom = domain_forms(domain)
    if local:
        normalized = f"{local}@{domain}"
        key = f"{fold(local)}@{dom.folded}"
        twin = f"{ascii_lookalike(local)}@{dom.twin}"
    else:
        normalized, key, twin = domain, dom.folded, dom.twin
    return Forms(
        _distinct(found, normalized, key, twin),
        key,
        normalized,
        dom.keys,
        # As found for fullwidth letters (normalising made them ASCII), normalised for
        # punycode (decoding revealed them).
        "" if found.isascii() and normalized.isascii() else lookalike_note(twin, found, normalized),
    )


# Domains repeat even where senders do not (every new gmail.com sender): their forms are
# memoised apart from the sender's (bounded; normalize_domain has its own memo). 8,192 holds
# the bench's 5,000 sender domains (bench/decide.py), ~1.5 MB when full; a domain longer than
# a DNS name can be (253 octets; junk from a header) is not kept.
def domain_forms(domain: str) -> DomainForms:
    """``domain`` (normalised) folded, as it looks in ASCII, and its folded suffixes."""
    if len(domain) > _MAX_CACHED_DOMAIN:
        return _domain_forms(domain)
    return _domain_memo(domain)


def _domain_forms(domain: str) -> DomainForms:
    folded = fold(domain)
    return DomainForms(folded, ascii_lookalike(domain), domain_suffixes(folded))


_domain_memo = lru_cache(maxsize=8192)(_domain_forms)
_MAX_CACHED_DOMAIN = 255


def _distinct(*texts: str) -> tuple[str, ...]:
    """``texts`` each once, in order (``dict.fromkeys`` costs more for two to four strings)."""
    out: list[str] = []
    for t in texts:
        if t not in out:
            out.append(t)
    return tuple(out)


def lookalike_note(twin: str, *texts: str) -> str:
    """``looks like <twin>: <letters>`` if ``texts`` hold look-alike letters, else ""."""
    letters = lookalike_letters(*texts)
    return f"looks like {twin}: {', '.join(letters)}" if letters else ""


class NameForms(NamedTuple):
    """A display name's forms, as ``Forms`` for an address."""

    normalized: str
    folded: str
    texts: tuple[str, ...]
    looks_like: str


def _name_forms(display_name: str) -> NameForms:
    name = normalize_display_name(display_name)
    if name.isascii():
        folded = fold(name)
        texts = (name,) if folded == name else (name, folded)
        # Fullwidth letters normalise to ASCII: the note names them.
        note = "" if display_name.isascii() else lookalike_note(name, display_name)
        return NameForms(name, folded, texts, note)
    words = [_word_forms(w) for w in name.split(" ")]
    folded = " ".join([w[0] for w in words])
    twin = " ".join([w[1] for w in words])
    return NameForms(
        name, folded, _distinct(name, folded, twin), lookalike_note(twin, display_name)
    )


_forms_memo = lru_cache(maxsize=16384)(_forms_of)
_name_memo = lru_cache(maxsize=16384)(_name_forms)


# Words of names repeat (first names, family names) where whole names do not: a non-ASCII
# word's fold costs ~5-10 us. Bounded in entries; a word longer than any name is not kept.
@lru_cache(maxsize=8192)
def _word_forms_memo(word: str) -> tuple[str, str]:
    return fold(word), ascii_lookalike(word)


def _word_forms(word: str) -> tuple[str, str]:
    """A normalised name word's fold and ASCII look-alike."""
    if len(word) > _MAX_CACHED_WORD:
        return fold(word), ascii_lookalike(word)
    return _word_forms_memo(word)


_MAX_CACHED_WORD = 64
