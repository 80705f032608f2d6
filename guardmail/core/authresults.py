"""Authentication-Results header fields (RFC 8601), read defensively.

The receiving server the person trusts records what it checked (SPF, DKIM, DMARC, ARC) in an
``Authentication-Results`` field that starts with its own ``authserv-id``. Anyone can write such
a field into a message before it reaches that server, so only fields carrying the trusted id
count, and of those only the topmost (the one the trusted server added last, above whatever came
with the message; RFC 8601 section 5 asks a server to remove forged ones bearing its id, but not
every server does).

Contracts:
- ``parse`` never raises and costs time linear in the (bounded) value: at most ``MAX_VALUE``
  characters are read, comments are skipped as in addresses (core/identity.py: a counter, no
  recursion), at most ``MAX_RESULTS`` results are kept.
- Method, result and property names are lower-cased; property values are kept as written
  (unquoted), truncated to ``MAX_TOKEN`` characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from guardmail.core.identity import strip_comments

MAX_VALUE = 16 * 1024
MAX_RESULTS = 64
MAX_TOKEN = 512


@dataclass(frozen=True, slots=True)
class Result:
    """One ``method=result`` with its reason and properties (``("header.from", "x.org")``)."""

    method: str
    result: str
    reason: str = ""
    props: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str:
        """The first property called ``name`` (``smtp.mailfrom``, ``header.d``), or ""."""
        for key, value in self.props:
            if key == name:
                return value
        return ""


@dataclass(frozen=True, slots=True)
class AuthResults:
    authserv_id: str
    results: tuple[Result, ...] = ()

    def of(self, method: str) -> list[Result]:
        return [r for r in self.results if r.method == method]


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` (a space splits at any whitespace) outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif not quoted and (ch == sep or (sep == " " and ch.isspace())):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value[:MAX_TOKEN]


def _result(resinfo: str) -> Result | None:
    tokens = _split(resinfo, " ")
    # "dkim = pass" is legal (CFWS around "="): glue such tokens back together.
    glued: list[str] = []
    for token in tokens:
        if glued and (token.startswith("=") or glued[-1].endswith("=")):
            glued[-1] += token
        else:
            glued.append(token)
    if not glued or "=" not in glued[0]:
        return None
    method, _, result = glued[0].partition("=")
    method = method.split("/", 1)[0].strip().lower()[:MAX_TOKEN]
    result = result.strip().lower()[:MAX_TOKEN]
    if not method or not result:
        return None
    reason = ""
    props: list[tuple[str, str]] = []
    for token in glued[1:]:
        key, eq, value = token.partition("=")
        if not eq:
            continue
        key = key.strip().lower()[:MAX_TOKEN]
        if key == "reason":
            reason = _unquote(value.strip())
        elif "." in key:
            props.append((key, _unquote(value.strip())))
    return Result(method, result, reason, tuple(props))


def parse(value: str) -> AuthResults | None:
    """The Authentication-Results field ``value``, or None if it names no authserv-id."""
    text = strip_comments(value[:MAX_VALUE])
    parts = _split(text, ";")
    if not parts:
        return None
    head = parts[0].split()
    if not head:
        return None
    authserv_id = _unquote(head[0]).lower()
    results: list[Result] = []
    for resinfo in parts[1 : MAX_RESULTS + 1]:
        found = _result(resinfo)
        if found is not None and found.method != "none":
            results.append(found)
    return AuthResults(authserv_id, tuple(results))


def trusted_field(fields: Iterable[tuple[str, str]], authserv_id: str) -> str | None:
    """The value of the topmost Authentication-Results field of ``fields`` (header order) whose
    authserv-id is ``authserv_id`` (case-insensitive), as written; None if there is none."""
    wanted = authserv_id.strip().lower()
    if not wanted:
        return None
    for name, value in fields:
        if name.lower() != "authentication-results":
            continue
        found = parse(value)
        if found is not None and found.authserv_id == wanted:
            return value
    return None


def trusted(fields: Iterable[tuple[str, str]], authserv_id: str) -> AuthResults | None:
    """``trusted_field`` parsed."""
    value = trusted_field(fields, authserv_id)
    return None if value is None else parse(value)
