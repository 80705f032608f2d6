"""Offender rules as a Sieve script (RFC 5228): what Sieve can express, and a comment for the rest.

Contracts:
- Pure: the same offenders, folder, extensions and ``generated`` text give the same script.
- Every offender whose rules Sieve can express gets one ``if anyof (...)`` block that files the
  message into the quarantine folder (``fileinto :create``, so a missing folder is created rather
  than the message silently kept in INBOX) and stops.
- What Sieve cannot express is named in a comment and stays with the daemon: Gmail dots and
  googlemail.com, look-alike letters (UTS #39), punycode vs Unicode domains, globs with ``[...]``,
  regexes using Python-only syntax (``\\d``, ``(?...)``, lazy quantifiers), JIDs.
- Sieve's comparisons are case-insensitive (i;ascii-casemap), like the daemon's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from guardmail.core.offender_patterns import REGEX_PREFIX
from guardmail.core.rules import OffenderRule

ADDRESS_HEADERS = ("from", "sender", "reply-to", "resent-from", "resent-sender")
DAEMON_ONLY = (
    "Gmail dots and googlemail.com, look-alike letters (UTS #39), punycode vs Unicode domains "
    "and invisible characters are matched by the guardmail daemon only."
)
# Python regex syntax POSIX extended regexes (Sieve :regex) do not have.
_PYTHON_ONLY = re.compile(r"\\[A-Za-z0-9]|\(\?|[*+?}]\?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    offender: str
    tests: tuple[str, ...]
    left_out: tuple[str, ...]


def quote(text: str) -> str:
    """A Sieve quoted string (RFC 5228 2.4.2): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_list(items: Iterable[str]) -> str:
    values = [quote(i) for i in items]
    return values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"


def _is_posix_regex(pattern: str) -> bool:
    return not _PYTHON_ONLY.search(pattern)


def offender_block(offender: OffenderRule, extensions: Sequence[str]) -> Block:
    headers = string_list(ADDRESS_HEADERS)
    tests: list[str] = []
    left_out: list[str] = []
    addresses = [a for a in offender.addresses if "@" in a]
    if addresses:
        tests.append(f"address :all :is {headers} {string_list(addresses)}")
        if "envelope" in extensions:
            tests.append(f'envelope :all :is "from" {string_list(addresses)}')
        if "subaddress" in extensions:
            # user+tag@domain: :user drops the tag (RFC 5233).
            for address in addresses:
                local, _, domain = address.rpartition("@")
                tests.append(
                    f"allof (address :user :is {headers} {quote(local)}, "
                    f"address :domain :is {headers} {quote(domain)})"
                )
    if offender.domains:
        domains = [d.strip().rstrip(".") for d in offender.domains]
        tests.append(f"address :domain :is {headers} {string_list(domains)}")
        tests.append(f"address :domain :matches {headers} {string_list('*.' + d for d in domains)}")
    globs = [p for p in offender.patterns if not p.startswith(REGEX_PREFIX)]
    plain_globs = [g for g in globs if "[" not in g]
    left_out += [f"pattern {g!r}: [...] sets" for g in globs if "[" in g]
    if plain_globs:
        tests.append(f"address :all :matches {headers} {string_list(plain_globs)}")
    regexes = [p[len(REGEX_PREFIX) :] for p in offender.patterns if p.startswith(REGEX_PREFIX)]
    if regexes and "regex" not in extensions:
        left_out += [f"regex {r!r}: the server has no regex extension" for r in regexes]
    elif regexes:
        posix = [r for r in regexes if _is_posix_regex(r)]
        left_out += [f"regex {r!r}: Python-only syntax" for r in regexes if r not in posix]
        if posix:
            tests.append(f"address :all :regex {headers} {string_list(posix)}")
    names = [n for n in offender.display_names if "[" not in n]
    left_out += [f"display name {n!r}: [...] sets" for n in offender.display_names if "[" in n]
    if names:
        # The From header as a whole starts with the display name, quoted or not.
        patterns = [f"{n}*<*".replace("**", "*") for n in names]
        patterns += [f'"{p}' for p in patterns]
        tests.append(f'header :matches "from" {string_list(patterns)}')
    left_out += [f"jid {j!r}: XMPP only" for j in offender.jids]
    return Block(offender=offender.name, tests=tuple(tests), left_out=tuple(left_out))


def export_script(
    offenders: Sequence[OffenderRule],
    *,
    folder: str,
    extensions: Sequence[str],
    generated: str,
) -> str:
    """The whole script. ``extensions``: the server's SIEVE capability (what may be required)."""
    blocks = [offender_block(o, extensions) for o in offenders]
    used = " ".join(t for b in blocks for t in b.tests)
    requires = ["fileinto", "mailbox"]
    for ext, marker in (("envelope", "envelope "), ("subaddress", ":user"), ("regex", ":regex")):
        if marker in used:
            requires.append(ext)
    lines = [
        f"# guardmail offender rules. {generated}",
        "# Written by `guardmail sieve export`; edits are lost at the next install.",
        f"# {DAEMON_ONLY}",
        f"require {string_list(requires)};",
        "",
    ]
    for block in blocks:
        lines.append(f"# Offender: {block.offender}")
        lines += [f"#   left to the daemon: {why}" for why in block.left_out]
        if not block.tests:
            lines += ["#   (nothing here Sieve can express)", ""]
            continue
        lines.append("if anyof (")
        lines += [f"    {t}," for t in block.tests[:-1]] + [f"    {block.tests[-1]}"]
        lines += [") {", f"    fileinto :create {quote(folder)};", "    stop;", "}", ""]
    return "\n".join(lines)
