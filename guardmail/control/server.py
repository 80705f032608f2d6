"""The daemon's local control socket: how client plugins and the CLI report items to it.

A Unix stream socket, ``control.sock`` in the state directory; there is no TCP port. The
socket file is 0600 (0660 when a group is configured) inside the 0700 state directory, and
every connection's peer is checked with SO_PEERCRED: only the daemon's own uid, root, and (when
configured) members of the group may talk to it. Anyone else gets one ``forbidden`` answer and
the connection is closed; nothing they sent is read.

Protocol: JSON lines (UTF-8). A client sends one JSON object per line and gets one JSON
object per line back, in order; a connection may carry several requests. Every answer has
``"ok"``: true with the operation's fields, or false with ``"kind"`` and ``"error"`` (a
sentence). Operations (``"op"``):

``report``
    ``raw`` (the item's bytes, base64, required), ``channel`` (``mail`` | ``xmpp``, default
    mail), ``offender`` or ``new_offender`` (a name, optional), ``action`` (``quarantine`` |
    ``block``, for a new offender), ``client`` (e.g. ``thunderbird``), ``account``, ``fidelity``
    (``exact`` | ``as re-serialised by the client``). Answer: ``{"ok": true, "result": {seq,
    sha256, size, duplicate, offender, rule_added, covered_by, offenders_file, file_loaded,
    hint}}``. The reporter recorded in the vault is the peer's uid and user name.
``offenders``
    Answer: ``{"ok": true, "offenders": [{"name", "action", "reported"}]}`` (for a client's
    menu; ``reported`` is true for entries of offenders.d/reported.yaml).
``status``
    Answer: ``{"ok": true, "status": {"tenant", "pid", "version", "offenders",
    "offenders_file", "file_loaded"}}``.

Error kinds: ``forbidden`` (peer uid refused), ``bad_request`` (not JSON, unknown op, bad
field), ``too_large`` (a line over ``MAX_LINE`` bytes; the connection is closed),
``bad_report`` (the report cannot be carried out: no sender, unknown offender ...),
``config`` (the offenders file is invalid), ``unavailable`` (the vault cannot take the item, or
it was archived but the offenders file could not be written).

The socket changes no configuration beyond what a report adds to offenders.d/reported.yaml
(offenders and aliases).
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardmail import __version__
from guardmail.config.settings import LoadedConfig
from guardmail.control.offenders import loads_reported, reported_path
from guardmail.control.protocol import (
    Refused,
    error_answer,
    file_report_answer,
    offender_list,
    parse_report,
    user_name,
)
from guardmail.control.report import MAX_ITEM_BYTES
from guardmail.daemon.tenant import Tenant
from guardmail.errors import GuardmailError
from guardmail.logs import event

SOCKET_NAME = "control.sock"
# A base64 item of MAX_ITEM_BYTES plus the JSON around it.
MAX_LINE = (MAX_ITEM_BYTES * 4) // 3 + 64 * 1024
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(data)
    return pid, uid, gid


class ControlServer:
    """Serves the protocol above until cancelled (run it in the daemon's TaskGroup).

    ``config`` returns the configuration in force (it changes on reload); ``on_change`` is
    called after a report added to the offenders file, to apply it at once.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        config: Callable[[], LoadedConfig],
        tenant: Tenant,
        on_change: Callable[[], object] | None = None,
        group: int | None = None,
        mode: int | None = None,
        max_line: int = MAX_LINE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = socket_path(state_dir)
        self._config = config
        self._tenant = tenant
        self._on_change = on_change
        self._group = group
        self._mode = mode if mode is not None else (0o660 if group is not None else 0o600)
        self._clock = clock
        self._max_line = max_line
        self._allowed_uids = frozenset({os.geteuid(), 0})
        self._reports = asyncio.Lock()  # one report at a time: they share the offenders file
        self.ready = asyncio.Event()  # set once the socket listens with its final mode

    def allowed(self, uid: int, gid: int) -> bool:
        if uid in self._allowed_uids:
            return True
        if self._group is None:
            return False
        if gid == self._group:
            return True
        try:
            return user_name(uid) in grp.getgrgid(self._group).gr_mem
        except KeyError:
            return False

    def _remove_stale(self) -> None:
        if not self.path.exists() and not self.path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # left by a daemon that died: nobody answers
            return
        finally:
            probe.close()
        raise GuardmailError(f"another guardmail daemon answers on {self.path}")

    async def run(self) -> None:
        """Serve until cancelled. If the socket cannot be made, say so and return: the
        daemon's sources go on protecting without it, and clients fall back to in-process."""
        try:
            self._remove_stale()
            server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=self._max_line
            )
        except (OSError, GuardmailError) as exc:
            event("control.unavailable", level=logging.ERROR, path=str(self.path), error=str(exc))
            return
        try:
            # Bound inside the 0700 state directory, so nobody else reaches it before this.
            if self._group is not None:
                os.chown(self.path, -1, self._group)
            os.chmod(self.path, self._mode)
            event("control.listening", path=str(self.path), mode=f"{self._mode:o}")
            self.ready.set()
            async with server:
                await server.serve_forever()
        finally:
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, gid = peer_credentials(writer.get_extra_info("socket"))
            if not self.allowed(uid, gid):
                event("control.refused", level=logging.WARNING, uid=uid, pid=pid)
                await self._send(
                    writer, error_answer("forbidden", f"uid {uid} may not use {self.path}")
                )
                return
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    await self._send(
                        writer,
                        error_answer(
                            "too_large", f"a request line is limited to {self._max_line} bytes"
                        ),
                    )
                    return
                if not line:
                    return
                await self._send(writer, await self._answer(line, uid))
        except (ConnectionError, BrokenPipeError):
            return  # the client went away; a report it sent is complete or was never started
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        await writer.drain()

    async def _answer(self, line: bytes, uid: int) -> dict[str, Any]:
        try:
            try:
                request = json.loads(line)
            except ValueError as exc:
                raise Refused("bad_request", f"the request is not JSON: {exc}") from None
            except RecursionError:
                # json gives up on deep nesting with RecursionError: a bad request, not a crash.
                raise Refused("bad_request", "the request is nested too deeply") from None
            if not isinstance(request, dict):
                raise Refused("bad_request", "the request must be a JSON object")
            op = request.get("op")
            if op == "report":
                return await self._report(request, uid)
            if op == "offenders":
                return {"ok": True, "offenders": offender_list(self._config())}
            if op == "status":
                return self._status()
            raise Refused("bad_request", f"unknown op {op!r}: use report, offenders or status")
        except Refused as exc:
            return error_answer(exc.kind, exc.error)

    async def _report(self, request: dict[str, Any], uid: int) -> dict[str, Any]:
        report = parse_report(request, uid=uid, via="control socket")
        async with self._reports:
            result = await file_report_answer(
                report, config=self._config(), tenant=self._tenant, now=self._clock()
            )
        event(
            "control.reported",
            uid=uid,
            client=report.client,
            seq=result.seq,
            offender=result.offender,
            rule_added=result.rule_added,
        )
        if result.rule_added and self._on_change is not None:
            self._on_change()
        return {"ok": True, "result": result.to_json()}

    def _status(self) -> dict[str, Any]:
        config = self._config()
        path = reported_path(config.path)
        return {
            "ok": True,
            "status": {
                "tenant": self._tenant.name,
                "pid": os.getpid(),
                "version": __version__,
                "offenders": len(config.settings.offenders),
                "offenders_file": str(path),
                "file_loaded": loads_reported(config, path),
            },
        }
