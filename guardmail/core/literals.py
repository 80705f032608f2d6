r"""The literal every match of a user's pattern must contain: what the prefilter of patterns.py
looks for before it runs a pattern (regexes.py compiles them).

Contracts:
- ``regex_literal`` and ``glob_literal`` return a string every match contains ("" if unsure):
  the prefilter of patterns.py relies on it never being wrong, only sometimes short.
- Pure: no I/O, no regex engine.
"""

from __future__ import annotations

import string

_GLOB_SPECIALS = frozenset("*?[")
_REGEX_BREAKERS = frozenset("^$.|()[]{}\\")
_ESCAPED_LITERALS = frozenset("\\.^$|?*+()[]{}@-_/:!#%&'\",;<=>`~ ")
_INLINE_FLAG_CHARS = frozenset("aiLmsuxU")


def glob_literal(glob: str) -> str:
    """The longest run outside wildcards and brackets: a string every match contains."""
    runs: list[str] = []
    current: list[str] = []
    in_bracket = False
    for ch in glob:
        if in_bracket:
            if ch == "]":
                in_bracket = False
            continue
        if ch in _GLOB_SPECIALS:
            runs.append("".join(current))
            current = []
            in_bracket = ch == "["
            continue
        current.append(ch)
    runs.append("".join(current))
    return max(runs, key=len)


def regex_literal(pattern: str) -> str:
    """A run of literal characters every match of ``pattern`` must contain, or "" if unsure.

    Conservative: a top-level alternation, an inline flag or ``\\Q...\\E`` gives ""; groups,
    classes and escapes other than escaped punctuation end a run (with their arguments: ``\\x41``,
    ``\\x{263a}``, ``\\pL``, ``\\p{Greek}``, ``\\012``); a quantifier that allows zero takes
    back the character before it.
    """
    runs = regex_literals(pattern)
    return runs[0] if runs else ""


def regex_literals(pattern: str) -> tuple[str, ...]:
    """Every run ``regex_literal`` finds (each one contained in every match: it only picks the
    longest), longest first, each once; () if unsure."""
    if "\\Q" in pattern or _has_inline_flag(pattern):
        return ()
    runs: list[str] = []
    current: list[str] = []
    depth = 0
    i = 0
    n = len(pattern)

    def end_run() -> None:
        nonlocal current
        runs.append("".join(current))
        current = []

    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if depth == 0 and nxt in _ESCAPED_LITERALS:
                current.append(nxt)
                i += 2
            else:
                end_run()
                i = _escape_end(pattern, i)
            continue
        if ch == "[":
            # Skip a character class, honouring "]" first and escapes inside it.
            end_run()
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            continue
        if ch == "(":
            depth += 1
            end_run()
        elif ch == ")":
            depth = max(0, depth - 1)
            end_run()
        elif ch == "|":
            if depth == 0:
                return ()
            end_run()
        elif ch in "*?{":
            if current:
                current.pop()
            end_run()
            if ch == "{":
                close = pattern.find("}", i)
                i = n if close < 0 else close
        elif ch == "+":
            end_run()
        elif ch in _REGEX_BREAKERS:
            end_run()
        elif depth == 0:
            current.append(ch)
        i += 1
    end_run()
    # Longest first; equal lengths in pattern order (regex_literal's choice, as max's).
    return tuple(sorted(dict.fromkeys(r for r in runs if r), key=len, reverse=True))


def _has_inline_flag(pattern: str) -> bool:
    """True if ``(?`` is followed by flag letters (``(?i)``, ``(?s:``, ``(?-i:``)."""
    start = pattern.find("(?")
    while start >= 0:
        nxt = pattern[start + 2 : start + 3]
        if nxt in _INLINE_FLAG_CHARS or nxt == "-":
            return True
        start = pattern.find("(?", start + 2)
    return False


def _escape_end(pattern: str, i: int) -> int:
    """The index just past the escape starting at ``pattern[i]`` (a backslash), arguments too."""
    n = len(pattern)
    kind = pattern[i + 1]
    j = i + 2
    if kind in "xpPN" and pattern.startswith("{", j):
        close = pattern.find("}", j)
        return n if close < 0 else close + 1
    if kind == "x":
        while j < min(n, i + 4) and pattern[j] in string.hexdigits:
            j += 1
    elif kind in "pP":
        j = min(n, j + 1)
    elif kind in "uU":
        width = 4 if kind == "u" else 8
        while j < min(n, i + 2 + width) and pattern[j] in string.hexdigits:
            j += 1
    elif kind in string.digits:
        while j < min(n, i + 4) and pattern[j] in string.digits:
            j += 1
    return j
