# SPDX-License-Identifier: GPL-3.0-or-later
"""What the plugin does, without Gajim: remember stanzas, send them to guardmail's socket.

guardmail's control socket speaks JSON lines (see guardmail/control/server.py in guardmail): one
request object per line, one answer object per line. A report carries the stanza as Gajim
re-serialised it (plugins never see the wire bytes), so it is sent with the fidelity
"as re-serialised by the client"; guardmail links it to the wire-exact copy when its own XMPP
watcher archived the same stanza-id.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOCKET_ENV = "GUARDMAIL_SOCKET"
FIDELITY = "as re-serialised by the client"
KEPT_PER_CONTACT = 50
TIMEOUT = 60.0


class ReportError(Exception):
    """The report could not be made; the message is a sentence for the user."""


@dataclass(frozen=True)
class Kept:
    message_id: str | None
    stanza_id: str | None
    xml: str


class StanzaStore:
    """The last KEPT_PER_CONTACT message stanzas per (account, bare JID) seen since start."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], deque[Kept]] = {}

    def add(self, account: str, sender: str, kept: Kept) -> None:
        key = (account, sender.split("/", 1)[0].casefold())
        self._kept.setdefault(key, deque(maxlen=KEPT_PER_CONTACT)).append(kept)

    def find(
        self, account: str, jid: str, message_id: str | None = None, stanza_id: str | None = None
    ) -> list[Kept]:
        kept = list(self._kept.get((account, jid.split("/", 1)[0].casefold()), ()))
        if message_id is None and stanza_id is None:
            return kept
        return [
            k
            for k in kept
            if (message_id is not None and k.message_id == message_id)
            or (stanza_id is not None and k.stanza_id == stanza_id)
        ]


def socket_path(configured: str = "") -> Path:
    path = os.environ.get(SOCKET_ENV) or configured
    if not path:
        raise ReportError(
            f"guardmail's control socket is not set: set {SOCKET_ENV} or the plugin's "
            "'socket' setting to <state_dir>/control.sock"
        )
    return Path(path).expanduser()


def call(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ReportError(
                f"guardmail does not answer on {path}: {exc.strerror or exc}"
            ) from None
        with sock.makefile("rwb") as stream:
            try:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
            except BrokenPipeError:
                pass  # refused: the answer says why
            line = stream.readline()
    except OSError as exc:
        raise ReportError(f"guardmail on {path} did not answer: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise ReportError(f"guardmail on {path} answered {line[:100]!r}") from None
    if not isinstance(answer, dict):
        raise ReportError(f"guardmail on {path} answered {answer!r}")
    return answer


@dataclass(frozen=True)
class Target:
    """What a menu item or the D-Bus action names: a chat, or one message in it, and the
    existing offender to add the sender to as an alias (None: guardmail's default)."""

    account: str
    jid: str
    message_id: str | None = None
    stanza_id: str | None = None
    offender: str | None = None

    def encode(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None}, sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Target:
        try:
            data = json.loads(text)
            return cls(
                account=str(data["account"]),
                jid=str(data["jid"]),
                message_id=data.get("message_id"),
                stanza_id=data.get("stanza_id"),
                offender=data.get("offender"),
            )
        except (ValueError, KeyError, TypeError):
            raise ReportError(f"not a report target: {text!r}") from None


def report(
    store: StanzaStore, path: Path, target: Target, *, account_jid: str
) -> list[dict[str, Any]]:
    """Report the target's kept stanzas, oldest first; returns guardmail's results."""
    kept = store.find(target.account, target.jid, target.message_id, target.stanza_id)
    if not kept:
        raise ReportError(
            f"no message from {target.jid} was seen since Gajim started, so there is nothing "
            "to keep as evidence"
        )
    results = []
    for k in kept:
        request = {
            "op": "report",
            "raw": base64.b64encode(k.xml.encode("utf-8")).decode("ascii"),
            "channel": "xmpp",
            "client": "gajim",
            "account": account_jid,
            "fidelity": FIDELITY,
        }
        if target.offender is not None:
            request["offender"] = target.offender
        answer = call(path, request)
        if not answer.get("ok"):
            raise ReportError(f"guardmail refused the report: {answer.get('error')}")
        results.append(answer["result"])
    return results


def offender_names(path: Path) -> list[str]:
    """The offenders guardmail knows, for the "Add to existing offender" menu."""
    answer = call(path, {"op": "offenders"})
    if not answer.get("ok"):
        raise ReportError(f"guardmail refused the offender list: {answer.get('error')}")
    return [str(o["name"]) for o in answer.get("offenders", [])]
