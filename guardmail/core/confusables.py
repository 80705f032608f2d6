"""Look-alike characters: the folded key, the ASCII look-alike form, invisible code points.

An offender writes ``st\u0430lker`` (Cyrillic a), fullwidth letters, or a zero-width space in
the middle of a name. ``core/identity.py`` normalises addresses, JIDs, domains and display names;
this module holds what it and the rules apply on top to compare them:

- The *folded* key (``fold``) maps look-alike characters to one prototype (UTS #39
  confusables), so it is only for comparing, never for display. Every comparison applies
  ``fold`` (or ``NormalizedAddress.key``) to both sides; comparing a folded string with an
  unfolded one is a bug.
- The *ASCII look-alike* form (``ascii_lookalike``) is for what cannot be folded: patterns a
  person writes in ASCII (``re:^st[a4]lker[0-9]*@``). Only non-ASCII characters that look like
  ASCII are replaced (Cyrillic ``а`` by ``a``); ASCII is kept as written, since folding it would
  turn ``1`` into ``l`` and ``m`` into ``rn`` under the pattern's feet. ``lookalike_letters``
  names the replaced characters, for people.
- ``remove_invisible`` removes default-ignorable code points (zero-width spaces and joiners,
  bidi controls, soft hyphen, variation selectors, Hangul fillers, tag characters): they render
  as nothing, so two strings that differ only in them look identical.

Invariants: every function accepts any ``str`` (NUL, lone surrogates, megabytes of junk) and
never raises; ``fold`` and ``ascii_lookalike`` give their own output back unchanged.

The confusables table (``guardmail.core.confusables_data``, ~3 MB resident while imported) is
imported at the first non-ASCII text folded, not with this module: ASCII folds by ``_ASCII_FOLD``
alone, so a daemon that sees only ASCII addresses and names never holds it (issue 27).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt), a superset of the
# zero-width (U+200B..U+200F, U+2060..U+2064, U+FEFF) and bidi (U+202A..U+202E, U+2066..U+2069)
# controls. Python's unicodedata has no accessor for this property, hence the literal ranges.
_INVISIBLE = re.compile(
    "["
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    "]"
)
# Every code point reaches a stable fold in two passes with the Unicode 13 table; the bound only
# keeps a pathological string from costing more than a few passes.
_FOLD_ROUNDS = 4


def remove_invisible(text: str) -> str:
    """``text`` without its default-ignorable code points (they render as nothing)."""
    return _INVISIBLE.sub("", text)


def skeleton(text: str) -> str:
    """The UTS #39 skeleton: strings that look alike have equal skeletons.

    NFD, drop default-ignorable code points (they render as nothing), replace each character by
    its prototype from ``CONFUSABLES``, NFD again. Case is kept (``"0"`` becomes ``"O"``); use
    ``fold`` for matching.
    """
    decomposed = remove_invisible(unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", decomposed.translate(_confusables()))


@functools.cache
def _confusables() -> dict[int, str]:
    from guardmail.core.confusables_data import CONFUSABLES

    return CONFUSABLES


def fold(text: str) -> str:
    """The key for every confusable-insensitive comparison: apply it to both sides.

    ``casefold(skeleton(casefold(NFKC(text))))``, repeated until it no longer changes.
    Compatibility forms (fullwidth, ligatures) and case go first so that skeleton sees
    canonical text; the last casefold is needed because some prototypes are capitals (digit
    zero's is ``"O"``). One pass is not always stable: Cherokee U+13B7 folds to ``"m"``, whose
    own prototype is ``"rn"``, so without repeating it would not match a Latin ``"M"``. The
    result is idempotent and a key, not text for people.
    """
    if text.isascii():
        # ASCII folds character by character (a per-character table, built from _fold_once):
        # the same result at a fraction of the cost (tests/unit/test_identity.py checks it).
        key = text.translate(_ASCII_FOLD)
        if key.isascii():
            return key
    key = _fold_once(text)
    if text.isascii() and key.isascii():
        # ASCII folds character by character and every ASCII result is already stable.
        return key
    for _ in range(_FOLD_ROUNDS):
        again = _fold_once(key)
        if again == key:
            break
        key = again
    return key


def _fold_once(text: str) -> str:
    return skeleton(unicodedata.normalize("NFKC", text).casefold()).casefold()


# Each ASCII character's fold, for the fast path of ``fold``: ``_fold_once`` works on each ASCII
# character alone (NFKC, casefold and NFD leave ASCII alone; the confusables table maps one
# character at a time). Written out, not computed from the table, so that ASCII text needs no
# table; tests/unit/test_confusables_lazy.py checks it against ``_fold_once``.
_ASCII_FOLD: dict[int, str] = {i: chr(i) for i in range(128)} | {
    ord(c): c.lower() for c in string.ascii_uppercase
}
_ASCII_FOLD |= {
    ord('"'): "''",
    ord("%"): "\u00ba/\u2080",  # not ASCII: ``fold`` then takes the general way
    ord("0"): "o",
    ord("1"): "l",
    ord("M"): "rn",
    ord("m"): "rn",
    ord("`"): "'",
    ord("|"): "l",
}


def ascii_lookalike(text: str) -> str:
    """``text`` with each non-ASCII character that looks like ASCII replaced by what it looks
    like (Cyrillic ``а`` U+0430 by ``a``, fullwidth ``ｓ`` by ``s``, lower case); ASCII and the
    other characters (``ö``, ``山``) kept. Pass it normalised text. Idempotent; never raises.
    """
    if text.isascii():
        return text
    return text.translate(_TWINS)


def lookalike_letters(*texts: str, limit: int = 8) -> tuple[str, ...]:
    """The characters of ``texts`` that ``ascii_lookalike`` replaces, each named once for a
    person (``"Cyrillic а (U+0430)"``), in order; at most ``limit`` of them. Never raises."""
    text = "".join(texts)
    if text.isascii():
        return ()
    out: list[str] = []
    # Only the non-ASCII characters, each once (one C pass each, not a Python loop over all).
    for ch in dict.fromkeys(text.translate(_DROP_ASCII)):
        if len(out) >= limit:
            break
        described = _described(ch)
        if described:
            out.append(described)
    return tuple(out)


class _TwinTable(dict[int, str]):
    """Code point -> ``_ascii_twin`` of it or the character itself, filled as characters are
    seen, for ``str.translate`` (one C pass over a text; a miss computes the entry). Emptied
    when full: a hostile stream of all of Unicode must not grow it past a bound."""

    def __missing__(self, code: int) -> str:
        if len(self) >= _TWIN_TABLE_SIZE:
            self.clear()
        ch = chr(code)
        twin = ch if code < 128 else _ascii_twin(ch) or ch
        self[code] = twin
        return twin


_TWIN_TABLE_SIZE = 8192
_TWINS = _TwinTable()
_DROP_ASCII: dict[int, None] = dict.fromkeys(range(128))


@functools.lru_cache(maxsize=8192)
def _described(ch: str) -> str:
    """``"Cyrillic а (U+0430)"`` for a character ``ascii_lookalike`` replaces, else ""."""
    if ch.isascii() or not _ascii_twin(ch):
        return ""
    name = unicodedata.name(ch, "")
    kind = name.split(" ", 1)[0].capitalize() if name else "Character"
    return f"{kind} {ch} (U+{ord(ch):04X})"


# One entry per distinct non-ASCII character seen in a sender: a few thousand at most in practice,
# and the cache is bounded for a hostile stream of all of Unicode.
@functools.lru_cache(maxsize=8192)
def _ascii_twin(ch: str) -> str:
    """The ASCII ``ch`` looks like (its fold, case-folded), or "" if it looks like no ASCII."""
    if "\ud800" <= ch <= "\udfff":
        return ""
    twin = fold(ch)
    return twin if twin.isascii() and twin.isprintable() else ""
