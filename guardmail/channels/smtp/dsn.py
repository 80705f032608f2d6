"""RFC 3461 DSN parameters of MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT), kept for re-injection.

aiosmtpd refuses parameters it does not know and upper-cases the ones it knows; ENVID and ORCPT
are case-sensitive xtext. ``take`` lifts the DSN parameters out of a MAIL or RCPT argument,
exactly as written, before aiosmtpd sees the rest.

Contracts:
- ``take(arg, names)`` returns the argument without the named parameters and those parameters
  as given (keyword upper-cased, value untouched); a malformed one raises ``BadParameter`` (the
  caller answers 501 5.5.4), so nothing the next hop would refuse is passed on.
- Bounds (RFC 3461): ENVID up to 100 octets, ORCPT up to 500, printable US-ASCII xtext without
  spaces or "="; RET is FULL or HDRS; NOTIFY is NEVER alone or a set of SUCCESS, FAILURE, DELAY;
  each parameter at most once.
"""

from __future__ import annotations

import re

from guardmail.errors import PeerError

MAIL_PARAMS = ("RET", "ENVID")
RCPT_PARAMS = ("NOTIFY", "ORCPT")
_XTEXT = re.compile(r"[!-<>-~]+")  # printable US-ASCII but "=" (RFC 3461 4)
_ORCPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*;[!-<>-~]+")
_PATH_END = re.compile(r">(?=\s|$)")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class BadParameter(PeerError):
    """A DSN parameter that RFC 3461 does not allow."""


def _check(name: str, value: str) -> None:
    if name == "RET":
        ok = value.upper() in ("FULL", "HDRS")
    elif name == "ENVID":
        ok = len(value) <= 100 and _XTEXT.fullmatch(value) is not None
    elif name == "ORCPT":
        ok = len(value) <= 500 and _ORCPT.fullmatch(value) is not None
    else:  # NOTIFY
        words = value.upper().split(",")
        ok = words == ["NEVER"] or (
            set(words) <= _NOTIFY and len(set(words)) == len(words) and words != [""]
        )
    if not ok:
        raise BadParameter(f"{name}={value[:40]!r} is not a valid DSN parameter")


def take(arg: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(``arg`` without the DSN parameters ``names``, those parameters as given)."""
    end = _PATH_END.search(arg)  # parameters follow the <path>
    if end is None:
        return arg, ()
    head, sep, rest = arg[: end.start()], ">", arg[end.end() :]
    kept: list[str] = []
    taken: dict[str, str] = {}
    for word in rest.split():
        name, eq, value = word.partition("=")
        if name.upper() not in names:
            kept.append(word)
            continue
        if not eq or name.upper() in taken:
            raise BadParameter(f"{name.upper()} given twice or without a value")
        _check(name.upper(), value)
        taken[name.upper()] = value
    return " ".join([head + sep, *kept]), tuple(f"{k}={v}" for k, v in taken.items())
