"""The client side of the control socket (see ``guardmail.control.server`` for the protocol).

Used by ``guardmail report`` and ``guardmail native-host``: they hand a report to the running
daemon, and do the work in-process only when no daemon answers (``NoDaemon``).
"""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

from guardmail.control.report import ReportRequest
from guardmail.control.server import MAX_LINE, socket_path
from guardmail.errors import GuardmailError, PeerError

TIMEOUT = 120.0  # a report fsyncs; a big one on a slow disk takes a while


class NoDaemon(GuardmailError):
    """No daemon listens on the control socket (none runs, or it died and left the file)."""


def call(state_dir: Path, request: dict[str, Any], *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request and return the daemon's answer (``ok`` true or false).

    Raises NoDaemon when nobody listens, PeerError when the daemon cannot be reached for
    another reason (permission) or breaks the protocol.
    """
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoDaemon(str(exc)) from None
        except OSError as exc:
            raise PeerError(f"cannot reach the daemon on {path}: {exc.strerror or exc}") from None
        with sock.makefile("rwb") as stream:
            try:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
            except BrokenPipeError:
                pass  # refused (uid): the daemon answered and closed; read why
            line = stream.readline(MAX_LINE)
    except OSError as exc:
        raise PeerError(f"the daemon on {path} did not answer: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise PeerError(f"the daemon on {path} answered {line[:200]!r}, not a JSON answer")
    return answer


def report_message(request: ReportRequest) -> dict[str, Any]:
    """The ``report`` request for ``request`` (the reporter is the peer uid, not sent)."""
    return {
        "op": "report",
        "raw": base64.b64encode(request.raw).decode("ascii"),
        "channel": request.channel.value,
        "offender": request.offender,
        "new_offender": request.new_offender,
        "action": request.action.value,
        "client": request.client,
        "account": request.account,
        "fidelity": request.fidelity,
    }
