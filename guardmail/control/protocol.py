"""The requests and answers of the control protocol (described in ``guardmail.control.server``).

Shared by the daemon's socket server and by ``guardmail native-host`` when it works in-process
(no daemon), so both read a request and answer it the same way.
"""

from __future__ import annotations

import base64
import binascii
import pwd
from datetime import datetime
from typing import Any

from guardmail.config.settings import LoadedConfig
from guardmail.control.offenders import BadReport, ReportedFile, reported_path
from guardmail.control.report import EXACT, RESERIALISED, Reported, ReportRequest, file_report
from guardmail.core.item import Channel
from guardmail.core.rules import Action
from guardmail.daemon.tenant import Tenant
from guardmail.errors import ConfigError, GuardmailError

FIDELITIES = (EXACT, RESERIALISED)
# Error kinds that mean the request itself is wrong (``guardmail report`` exits 2 on them).
USAGE_KINDS = frozenset({"bad_request", "bad_report", "config", "too_large"})


class Refused(GuardmailError):
    """A request answered with an error: ``kind`` as documented, ``error`` a sentence."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error


def error_answer(kind: str, error: str) -> dict[str, Any]:
    return {"ok": False, "kind": kind, "error": error}


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _text(request: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = request.get(name, default)
    if value is not None and not isinstance(value, str):
        raise Refused("bad_request", f"{name!r} must be a string, not {value!r}")
    return value


def _choice(request: dict[str, Any], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _text(request, name, default)
    if value not in allowed:
        raise Refused("bad_request", f"{name!r} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def parse_report(request: dict[str, Any], *, uid: int, via: str) -> ReportRequest:
    """A ``report`` request read into a ReportRequest; Refused(bad_request) when malformed."""
    raw_b64 = _text(request, "raw")
    if raw_b64 is None:
        raise Refused("bad_request", "a report needs 'raw': the item's bytes in base64")
    try:
        raw = base64.b64decode(raw_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused("bad_request", f"'raw' is not base64: {exc}") from None
    channel = _choice(request, "channel", "mail", tuple(c.value for c in Channel))
    action = _choice(request, "action", "quarantine", (Action.QUARANTINE, Action.BLOCK))
    fidelity = _choice(request, "fidelity", EXACT, FIDELITIES)
    offender, new_offender = _text(request, "offender"), _text(request, "new_offender")
    if offender is not None and new_offender is not None:
        raise Refused("bad_request", "give 'offender' or 'new_offender', not both")
    return ReportRequest(
        raw=raw,
        channel=Channel(channel),
        offender=offender,
        new_offender=new_offender,
        action=Action(action),
        client=_text(request, "client", "unknown") or "unknown",
        account=_text(request, "account", "") or "",
        note=_text(request, "note", "") or "",
        user=user_name(uid),
        uid=uid,
        via=via,
        fidelity=fidelity,
    )


async def file_report_answer(
    report: ReportRequest, *, config: LoadedConfig, tenant: Tenant, now: datetime
) -> Reported:
    """``file_report`` with its errors turned into Refused kinds."""
    try:
        return await file_report(report, config=config, tenant=tenant, now=now)
    except BadReport as exc:
        raise Refused("bad_report", str(exc)) from None
    except ConfigError as exc:
        raise Refused("config", str(exc)) from None
    except GuardmailError as exc:  # VaultUnavailable, ReportIncomplete
        raise Refused("unavailable", str(exc)) from None


def offender_list(config: LoadedConfig) -> list[dict[str, Any]]:
    """The offenders for a client's menu, hand-written ones first, then reported ones."""
    try:
        on_file = ReportedFile(reported_path(config.path)).read()
    except (ConfigError, OSError):
        on_file = []
    reported = {o.name.casefold() for o in on_file}
    offenders = {o.name.casefold(): o for o in config.settings.offenders}
    for o in on_file:
        offenders.setdefault(o.name.casefold(), o)
    return [
        {"name": o.name, "action": o.action, "reported": key in reported}
        for key, o in offenders.items()
    ]
