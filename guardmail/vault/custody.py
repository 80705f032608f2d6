"""Chain of custody: who looked at, exported, verified or decided about the evidence, and when.

Every such act is itself a journal entry, hash-chained, in the signed Merkle log and timestamped
like every other:

    custody           "what": "view" (``evidence show``, ``review show``: the entry whose bytes
                      were shown is ``entry``) or "verify" (``evidence verify`` of the vault:
                      its outcome as counts, and how many ``--against`` bundles)
    export            a bundle written (guardmail.export.bundle), with ``by``
    review.confirmed  a held item's decision (guardmail.control.review), with ``by``
    review.dismissed

``by`` says who: ``{"via": "command line", "uid", "user"}`` for a local command (``sudo_user``
too when sudo ran it, as sudo tells), or ``{"via": "control socket", "uid", "user", "pid"}``
for a control-socket peer, whose credentials the kernel gives (SO_PEERCRED). The time is the
entry's own.

Contracts:
- A view is journaled *before* the bytes are shown: if the vault cannot record it, nothing is
  shown (``VaultUnavailable``), as an item is never acted on before it is archived.
- A custody entry names entries by seq and offender only, never an item's content, so that the
  export's redaction (guardmail.export.selection) can withhold it like any other entry.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from guardmail.storage.base import JournalRow
from guardmail.vault import journal
from guardmail.vault.store import Vault

CUSTODY = "custody"
KINDS = (CUSTODY, "export", "review.confirmed", "review.dismissed")
COMMAND_LINE, CONTROL_SOCKET = "command line", "control socket"


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def local_user(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Who runs this command: the real uid and its name (and sudo's SUDO_USER/SUDO_UID)."""
    env = os.environ if env is None else env
    uid = os.getuid()
    by: dict[str, Any] = {"via": COMMAND_LINE, "uid": uid, "user": _name(uid)}
    if env.get("SUDO_USER"):
        by["sudo_user"] = env["SUDO_USER"][:64]
        if env.get("SUDO_UID", "").isdigit():
            by["sudo_uid"] = int(env["SUDO_UID"])
    return by


def socket_peer(pid: int, uid: int) -> dict[str, Any]:
    """Who is at the other end of the control socket (its SO_PEERCRED pid and uid)."""
    return {"via": CONTROL_SOCKET, "uid": uid, "user": _name(uid), "pid": pid}


def record_view(
    vault: Vault, row: JournalRow, *, command: str, by: Mapping[str, Any], now: datetime
) -> JournalRow:
    """Journal that entry ``row``'s bytes are about to be shown; VaultUnavailable if not."""
    body = journal.entry(row)
    fields: dict[str, Any] = {
        "what": "view",
        "command": command,
        "entry": row.seq,
        "entry_kind": row.kind,
        "by": dict(by),
    }
    if isinstance(body.get("offender"), str):
        fields["offender"] = body["offender"]
    return vault.record(CUSTODY, fields, now=now)


def record_verify(
    vault: Vault,
    *,
    entries: int,
    problems: int,
    against: int,
    by: Mapping[str, Any],
    now: datetime,
) -> JournalRow:
    """Journal a verification of the vault and its outcome (counts only)."""
    fields: dict[str, Any] = {
        "what": "verify",
        "command": "evidence verify",
        "entries": entries,
        "problems": problems,
        "by": dict(by),
    }
    if against:
        fields["against_bundles"] = against
    return vault.record(CUSTODY, fields, now=now)


def who(by: object) -> str:
    """``by`` in words: ``jane (uid 1000) on the command line``."""
    if not isinstance(by, dict):
        return "(not recorded)"
    text = f"{by.get('user')} (uid {by.get('uid')})"
    if by.get("sudo_user"):
        text += f" via sudo by {by.get('sudo_user')}"
    if by.get("via") == CONTROL_SOCKET:
        return f"{text}, process {by.get('pid')} on the control socket"
    return f"{text} on the command line"


def describe(row: JournalRow, body: Mapping[str, Any]) -> str:
    """One line for a custody record of ``KINDS``: what was done, by whom."""
    by = who(body.get("by"))
    if row.kind == CUSTODY and body.get("what") == "view":
        return f"entry {body.get('entry')} viewed ({body.get('command')}) by {by}"
    if row.kind == CUSTODY and body.get("what") == "verify":
        outcome = "intact" if body.get("problems") == 0 else f"{body.get('problems')} problem(s)"
        return f"vault verified by {by}: {body.get('entries')} entries, {outcome}"
    if row.kind == "export":
        offenders = ", ".join(str(o) for o in body.get("offenders") or []) or "everyone"
        return f"exported {body.get('items')} items ({offenders}) by {by}"
    decision = "confirmed" if row.kind == "review.confirmed" else "dismissed"
    return f"review of entry {body.get('archived_seq')} {decision} by {by}"
