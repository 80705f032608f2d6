"""An offender's glob and regex patterns as prefilter entries, and the checks that refuse a
pattern no rule may hold.

Contracts:
- A glob matches the identity as found or normalised, and, folded (core/confusables.py), its
  folded form: only its literal parts are folded, wildcards and bracket sets stay as written.
  A pattern after ``REGEX_PREFIX`` is a regex, run as written.
- ``check_pattern`` and ``check_display_name`` raise ValueError (a sentence) for what RE2 cannot
  run and for what would match anyone (``*``, ``*@*``, ``re:.*``, ``re:^``), judged on the same
  entries a RuleSet (rules.py) is built from: the config edge calls them, so a RuleSet is only
  ever built from patterns that passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from guardmail.core.confusables import fold
from guardmail.core.forms import forms_of, name_forms
from guardmail.core.identity import normalize_display_name
from guardmail.core.patterns import Entry, glob_entry, regex_entry, subject

REGEX_PREFIX = "re:"

T = TypeVar("T")


def glob_entries(glob: str, payload: T) -> list[Entry[T]]:
    """A glob matches the identity as found or normalised, and (folded) its folded form."""
    plain = glob.casefold()
    folded = _fold_glob(plain)
    globs = dict.fromkeys((plain, folded))
    return [glob_entry(g, payload) for g in globs]


def _fold_glob(glob: str) -> str:
    """Fold the literal parts of a glob, leaving wildcards and bracket sets as written."""
    out: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch in "*?[":
            out.append(fold("".join(literal)))
            literal = []
            if ch == "[":
                end = glob.find("]", i + 2)
                end = len(glob) - 1 if end < 0 else end
                out.append(glob[i : end + 1])
                i = end + 1
                continue
            out.append(ch)
        else:
            literal.append(ch)
        i += 1
    out.append(fold("".join(literal)))
    return "".join(out)


def pattern_entries(pattern: str, payload: T) -> list[Entry[T]]:
    """The entries of an offender's pattern: a regex after ``REGEX_PREFIX``, else a glob."""
    if pattern.startswith(REGEX_PREFIX):
        source = pattern[len(REGEX_PREFIX) :]
        return [regex_entry(source, payload)]
    return glob_entries(pattern, payload)


# Senders unlike one another in every way a pattern tells addresses apart (and every kind of
# name). A pattern that matches all of them would match anyone: blocking everyone's mail is never
# what an offender rule means, and a slip like ``*`` or ``re:.*`` must not do it silently.
ANYONE_ADDRESSES = (
    "a@b.cd",
    "alice@example.org",
    "bob.smith+news@gmail.com",
    "12345@qq.com",
    "no-reply@accounts.google.com",
    "jörg@münchen.de",
    "山田@例え.jp",
    "x_y-z@sub.mail.example.net",
    "q9@q9.io",
)
ANYONE_NAMES = ("Alice Example", "bob", "山田太郎", "X", "Support Team", "12345", "Jörg Müller")


def check_pattern(pattern: str) -> None:
    """ValueError (a sentence) if ``pattern`` (a glob, or a regex after ``re:``) cannot be used.

    It cannot when RE2 cannot run it (see patterns.py) or when it matches every sender.
    """
    entries = pattern_entries(pattern, pattern)
    forms = [forms_of(a, False) for a in ANYONE_ADDRESSES]
    if all(f is not None and _any_matches(entries, f.texts) for f in forms):
        raise ValueError(
            f"{pattern!r} matches every sender (it matches even {ANYONE_ADDRESSES[1]!r} and "
            f"{ANYONE_ADDRESSES[3]!r}), so it would block everyone's mail; write the offender's "
            "own addresses, domains or a narrower pattern"
        )


def check_display_name(glob: str) -> None:
    """ValueError (a sentence) if the display-name glob ``glob`` would match every name."""
    entries = glob_entries(normalize_display_name(glob), glob)
    if all(_any_matches(entries, n.texts) for n in map(name_forms, ANYONE_NAMES)):
        raise ValueError(
            f"display name glob {glob!r} matches every name (even {ANYONE_NAMES[0]!r} and "
            f"{ANYONE_NAMES[2]!r}), so it would block everyone who writes one; write the names "
            "the offender uses"
        )


def _any_matches(entries: list[Entry[str]], texts: Iterable[str]) -> bool:
    """Whether one of ``entries`` matches one of ``texts``, as PatternIndex.matching decides."""
    subjects = [subject(t) for t in texts]
    return any(e.regex.search(t) for e in entries for t in subjects)
