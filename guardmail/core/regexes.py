r"""User patterns compiled for RE2 (the literal every match of one must contain: literals.py).

Contracts:
- Every pattern runs on RE2 (``compile_regex``, ``glob_regex``): time linear in the text
  whatever the pattern, so no pattern a user writes can stall the daemon. What RE2 cannot run
  (backreferences, lookaround, atomic groups, possessive quantifiers, ``(?x)``) raises ValueError
  with a sentence saying why; so does a pattern too large for RE2's memory budget. RE2's syntax
  is Python's otherwise, with these differences: ``\Z`` is accepted and read as ``\z`` (end of
  text); ``$`` matches only at the very end (texts here never end in a newline); ``\d``, ``\w``,
  ``\s`` and ``\b`` are ASCII-only (write ``\pL``, ``\p{Nd}`` for Unicode classes). Matching
  ignores case with Unicode simple case folding, as ``re.IGNORECASE`` does.
- Globs are fnmatch globs, translated here (not by ``fnmatch.translate``, whose 3.11 output uses
  atomic groups RE2 lacks) with the same meaning, including its quirks for ranges in ``[...]``,
  case-insensitive and with ``*`` spanning newlines. As ``fnmatch.fnmatch`` does, a glob matches
  the whole text: ``rob@*`` matches ``rob@x`` but not ``jarob@x`` (tests compare with
  ``fnmatch.translate`` matched on Python's re).
- Pure: no I/O. RE2 writes nothing to stderr (``log_errors`` off).
"""

from __future__ import annotations

import functools
import re
import string
from typing import Protocol

import re2

_PUNCTUATION = frozenset(string.punctuation)
_ALNUM = frozenset(string.ascii_letters + string.digits)


class Matcher(Protocol):
    """A compiled pattern as an Entry holds it (``compile_regex`` and ``glob_regex`` make them)."""

    def search(self, text: str, /) -> object | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the error is raised, with a sentence; RE2 need not print it
    return options


_OPTIONS = _options()


class _Search:
    """Whether a pattern matches: an RE2 Set of the pattern alone answers which of its patterns
    matched and no positions, a few times cheaper from Python than a search (whose wrapper
    turns byte offsets back into character offsets and builds a match object). The Set also
    holds the empty pattern, found in every text: a Set has no fallback when its DFA runs out
    of memory and then answers nothing, which this tells apart from no match and hands to the
    regex (whose NFA finishes)."""

    __slots__ = ("_set", "_source")

    def __init__(self, matcher: re2.Set, source: str) -> None:
        self._set = matcher
        self._source = source

    def search(self, text: str, /) -> bool | None:
        found = self._set.Match(text)
        if found is None:
            return _regex(self._source).search(text) is not None or None
        return True if len(found) > 1 else None


# Validation at the config edge and the RuleSet built after it compile the same patterns, and a
# reload compiles mostly unchanged ones: compiling once is most of the cost of loading rules.
@functools.lru_cache(maxsize=1 << 16)
def _compile(source: str) -> Matcher:
    """``source`` compiled by RE2, or ValueError carrying RE2's reason."""
    matcher = re2.Set.SearchSet(_OPTIONS)
    try:
        matcher.Add("")
        matcher.Add(source)
        matcher.Compile()
    except re2.error:
        # Not RE2 syntax (the regex says why), or a pattern whose DFA does not fit the Set's
        # budget though RE2 can run it: the regex searches it.
        return _regex(source)
    return _Search(matcher, source)


# Only the patterns a Set cannot search are held here (and each one whose search ran out of
# memory, while it does).
@functools.lru_cache(maxsize=256)
def _regex(source: str) -> Matcher:
    try:
        return re2.compile(source, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def compile_regex(source: str) -> Matcher:
    """A user's regex (Python-like syntax, see the module contracts), case-insensitive, on RE2.

    ValueError says why a regex cannot be used: it does not compile at all, or it needs a
    feature RE2 leaves out to guarantee linear time.
    """
    if not encodable(source):
        raise ValueError(f"regex {source!r} holds a lone surrogate, which no text can contain")
    try:
        return _compile(_python_end_anchor(source))
    except ValueError as exc:
        reason = str(exc)
    try:
        re.compile(source)
    except re.error as exc:
        raise ValueError(f"regex {source!r} does not compile: {exc}") from None
    raise ValueError(
        f"regex {source!r} cannot run on RE2 ({reason}): guardmail matches with RE2 so that no "
        "pattern takes more than linear time, and RE2 has no backreferences, lookahead or "
        "lookbehind, atomic groups, possessive quantifiers or (?x) verbose mode"
    )


def _python_end_anchor(source: str) -> str:
    r"""``source`` with Python's ``\Z`` (end of text) written as RE2 spells it, ``\z``."""
    if "\\Z" not in source:
        return source
    out: list[str] = []
    i = 0
    while i < len(source):
        if source[i] == "\\" and i + 1 < len(source):
            pair = source[i : i + 2]
            out.append("\\z" if pair == "\\Z" else pair)
            i += 2
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def glob_regex(glob: str) -> Matcher:
    """A glob (fnmatch syntax, case-insensitive, whole text) compiled by RE2.

    ValueError only for a glob too large for RE2's memory budget.
    """
    try:
        return _compile(glob_source(glob))
    except ValueError as exc:
        raise ValueError(f"glob {glob!r} cannot be compiled ({exc})") from None


def glob_source(glob: str) -> str:
    """The RE2 source of ``glob``: what ``fnmatch.translate`` means, in syntax RE2 accepts."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(_escape("["))
            else:
                out.append(_bracket(glob, i, j))
                i = j + 1
        else:
            out.append(_escape(ch))
    return "\\A(?s:" + "".join(out) + ")\\z"


def glob_shape(glob: str) -> tuple[str, str] | None:
    """How ``glob`` matches when it is a plain ASCII run with ``*`` at neither, one or both
    ends: ``("exact" | "prefix" | "suffix" | "contains", run)``, else None. Such a glob
    matches an ASCII text exactly when the text, lower-cased, equals, starts with, ends with
    or contains the run lower-cased (RE2's case folding of ASCII against ASCII is just that;
    a non-ASCII text can match an ASCII letter, Kelvin sign for ``k``, so it is not)."""
    if not glob.isascii() or "?" in glob or "[" in glob:
        return None
    lead, trail = glob.startswith("*"), glob.endswith("*")
    run = glob.strip("*")
    if not run or "*" in run:
        return None
    kind = ("contains" if trail else "suffix") if lead else ("prefix" if trail else "exact")
    return kind, run.lower()


def _bracket(glob: str, i: int, j: int) -> str:
    """The class ``glob[i:j]`` (between ``[`` and ``]``) means to fnmatch, as an RE2 class."""
    stuff = glob[i:j]
    if "-" not in stuff:
        tokens = [(ch, False) for ch in stuff]
    else:
        # fnmatch's own split into range chunks, with its removal of empty ranges (z-a).
        chunks: list[str] = []
        k = i + 2 if glob[i] == "!" else i + 1
        while True:
            k = glob.find("-", k, j)
            if k < 0:
                break
            chunks.append(glob[i:k])
            i = k + 1
            k = k + 3
        chunk = glob[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        # A hyphen between chunks makes a range; one inside a chunk is a plain character.
        tokens = []
        for n, part in enumerate(chunks):
            if n:
                tokens.append(("-", True))
            tokens += [(ch, False) for ch in part]
    if not tokens:
        return "[^\\x00-\\x{10FFFF}]"  # an empty set: never matches
    if tokens == [("!", False)]:
        return "."
    negate = tokens[0] == ("!", False)
    if negate:
        tokens = tokens[1:]
    items: list[str] = []
    k = 0
    while k < len(tokens):
        ch = tokens[k][0]
        k += 1
        if k + 1 < len(tokens) and tokens[k] == ("-", True):
            items.append(f"{_escape(ch)}-{_escape(tokens[k + 1][0])}")
            k += 2
        else:
            items.append(_escape(ch))
    return "[" + ("^" if negate else "") + "".join(items) + "]"


def _escape(ch: str) -> str:
    """One character as a literal in RE2 source, inside or outside a class."""
    if ch in _ALNUM:
        return ch
    if ch in _PUNCTUATION:
        return "\\" + ch
    if "\ud800" <= ch <= "\udfff":
        ch = "\ufffd"  # as subject() shows a lone surrogate
    return f"\\x{{{ord(ch):x}}}"


def encodable(text: str) -> bool:
    """True if ``text`` has no lone surrogate (so it can be UTF-8, as RE2 needs)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
