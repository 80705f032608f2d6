"""The memoised, piecewise forms of core/forms.py equal the forms computed the long way (whole
strings, no memo), on any text, first sighting or repeat."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guardmail.core.confusables import ascii_lookalike, fold, lookalike_letters
from guardmail.core.forms import (
    Forms,
    NameForms,
    domain_forms,
    forms_of,
    lookalike_note,
    name_forms,
)
from guardmail.core.identity import (
    domain_suffixes,
    normalize_address,
    normalize_display_name,
    normalize_domain,
    normalize_jid,
)
from guardmail.core.rules import clear_caches


def reference_forms(address: str, is_jid: bool) -> Forms | None:
    """What forms_of meant before it was built piecewise: whole strings, no memo."""
    found = address.strip().casefold()
    norm = normalize_jid(found) if is_jid else normalize_address(found)
    if norm is None:
        return None
    twin = ascii_lookalike(norm.address)
    return Forms(
        tuple(dict.fromkeys((found, norm.address, norm.key, twin))),
        norm.key,
        norm.address,
        domain_suffixes(fold(norm.domain)),
        lookalike_note(twin, found, norm.address),
    )


def reference_name_forms(display_name: str) -> NameForms:
    name = normalize_display_name(display_name)
    folded = fold(name)
    twin = ascii_lookalike(name)
    texts = tuple(dict.fromkeys((name, folded, twin)))
    return NameForms(name, folded, texts, lookalike_note(twin, display_name))


# What evasions are made of: ASCII, confusables (Cyrillic, Greek, fullwidth), the Kelvin sign,
# long s, dotted I, sharp s, combining marks, Hangul jamo, invisibles, spaces that NFKC makes
# (U+00A8), NUL, a lone surrogate, and the characters addresses are parsed by.
PIECES = st.sampled_from(
    [
        *"aAbkKmMsSiI01%|`\"'.+-_@ ()<>\\/",
        "\u0430",  # Cyrillic a
        "\u03bf",  # Greek omicron
        "\uff53",  # fullwidth s
        "\u212a",  # Kelvin sign
        "\u017f",  # long s
        "\u0130",  # dotted I
        "\u00df",  # sharp s
        "\u0301",  # combining acute
        "\u0338",  # combining long solidus
        "\u1100",  # Hangul choseong
        "\u1161",  # Hangul jungseong
        "\u200b",  # zero-width space
        "\u00a8",  # diaeresis: NFKC gives a space and a combining mark
        "\u00a0",
        "\u3000",
        "\u3002",  # ideographic full stop
        "\ufe6b",  # small commercial at
        "\x00",
        "\ud800",
        "xn--",
        "xn--bcher-kva",
        "xn--80ak6aa92e",
        "gmail.com",
        "googlemail.com",
        "ö",
        "山",
        "\u13b7",  # Cherokee, folds to m, whose prototype is rn
    ]
)
TEXTS = st.lists(PIECES, max_size=14).map("".join)
ADDRESSES = st.one_of(
    TEXTS,
    st.tuples(TEXTS, TEXTS).map("@".join),
    st.tuples(TEXTS, TEXTS).map(lambda p: f"{p[0]}@{p[1]}.example"),
)


@settings(max_examples=1500, deadline=None)
@given(ADDRESSES, st.booleans())
@example("St\u0430lker+x@MAIL.example", False)
@example("stalker@xn--bcher-kva.example.", False)
@example("\uff53talker@gmail.com", False)
@example("a.l.t@googlemail.com", False)
@example("\u212a\u017f@\u0130.example/res", True)
@example("\u00a8@\u00a8", False)
@example("x@\ud800", False)
def test_forms_of_an_address_are_those_of_the_whole_address(address: str, is_jid: bool) -> None:
    clear_caches()
    first = forms_of(address, is_jid)
    assert first == reference_forms(address, is_jid)
    assert forms_of(address, is_jid) == first  # remembered: the same forms


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(TEXTS, st.sampled_from(["\t", "  ", '"', "\u201c"])), max_size=5))
@example(["\uff2a\uff4f\uff48\uff4e"])  # fullwidth letters normalise to ASCII
@example(["Cr\u0435\u0435p7", " the second"])
@example(["\u00a8b", " ", "\u0301"])
def test_forms_of_a_display_name_are_those_of_the_whole_name(words: list[str]) -> None:
    name = " ".join(words)
    clear_caches()
    first = name_forms(name)
    assert first == reference_name_forms(name)
    assert name_forms(name) == first


@settings(max_examples=3000, deadline=None)
@given(TEXTS, TEXTS, st.sampled_from("@ "))
def test_fold_and_lookalike_of_two_parts_joined_are_those_of_the_parts(
    left: str, right: str, joint: str
) -> None:
    assert fold(left + joint + right) == fold(left) + joint + fold(right)
    assert ascii_lookalike(left + joint + right) == (
        ascii_lookalike(left) + joint + ascii_lookalike(right)
    )


@settings(max_examples=500, deadline=None)
@given(TEXTS)
@example("\u00e4" * 300)  # longer than what the memo keeps
def test_a_remembered_domain_is_normalised_and_folded_as_a_new_one(domain: str) -> None:
    once = normalize_domain(domain)
    assert normalize_domain(domain) == once
    forms = domain_forms(once)
    assert forms == domain_forms(once)
    assert forms.folded == fold(once)
    assert forms.twin == ascii_lookalike(once)
    assert forms.keys == domain_suffixes(fold(once))


@pytest.mark.parametrize("word", ["M\u00fcller", "\u0418\u0432\u0430\u043d", "x" * 100])
def test_a_name_word_remembered_or_not_folds_alike(word: str) -> None:
    clear_caches()
    one = name_forms(f"J\u00f6rg {word}")
    two = name_forms(f"Anna {word}")  # the word's fold is remembered from the first name
    assert one == reference_name_forms(f"J\u00f6rg {word}")
    assert two == reference_name_forms(f"Anna {word}")


def reference_twin(ch: str) -> str:
    """What ``ascii_lookalike`` puts for one character: the ASCII it looks like, else itself."""
    if ch.isascii() or "\ud800" <= ch <= "\udfff":
        return ch
    twin = fold(ch)
    return twin if twin.isascii() and twin.isprintable() and twin else ch


def reference_letters(text: str, limit: int = 8) -> tuple[str, ...]:
    out: dict[str, str] = {}
    for ch in text:
        if len(out) >= limit:
            break
        if ch not in out and reference_twin(ch) != ch:
            name = unicodedata.name(ch, "")
            kind = name.split(" ", 1)[0].capitalize() if name else "Character"
            out[ch] = f"{kind} {ch} (U+{ord(ch):04X})"
    return tuple(out.values())


@settings(max_examples=1000, deadline=None)
@given(st.one_of(TEXTS, st.text()))
def test_lookalike_form_and_letters_by_table_are_those_of_each_character(text: str) -> None:
    assert ascii_lookalike(text) == "".join(map(reference_twin, text))
    assert lookalike_letters(text) == reference_letters(text)


def test_lookalike_table_emptied_when_full_still_gives_each_characters_twin() -> None:
    text = "".join(map(chr, range(0x100, 0x2600)))  # more characters than the table holds
    twins = "".join(map(reference_twin, text))
    assert ascii_lookalike(text) == twins
    assert ascii_lookalike(text) == twins
    assert lookalike_letters(text, limit=10_000) == reference_letters(text, limit=10_000)


@settings(max_examples=1500, deadline=None)
@given(st.lists(PIECES.filter(lambda p: not set(p) & set('"()<>\\')), max_size=14).map("".join))
@example("j\u00f6rg@m\u00fcnchen.de")
@example(" \u0430lice @ b\u00fccher.example. ")
def test_an_address_without_quotes_comments_or_brackets_parses_as_with_an_empty_comment(
    address: str,
) -> None:
    # An empty comment sends the address through every parser (quotes, comments, brackets):
    # the way round them for addresses that need none must give the same mailbox.
    assert normalize_address(address) == normalize_address("()" + address)
