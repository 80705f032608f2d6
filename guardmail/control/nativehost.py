"""``guardmail native-host``: the native messaging host the Thunderbird add-on talks to.

Mozilla's stdio protocol: each message, in both directions, is a 4-byte unsigned length in
native byte order, then that many bytes of UTF-8 JSON. Thunderbird starts the host (through the
manifest ``install-client thunderbird`` writes) with ``[path, manifest, extension id]`` for every
``runtime.sendNativeMessage``; the host answers every message it reads until stdin closes.

Requests and answers are the control protocol's (``guardmail.control.server``), plus ``ping``. Each
is handed to the running daemon over its socket; with no daemon, the host does the same work in-
process through the same pipeline. Answers stay well under Thunderbird's 1 MiB limit for what a
host may send (a report's answer is a hash and a few names).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from datetime import UTC, datetime
from typing import Any, BinaryIO

from guardmail import __version__
from guardmail.config.settings import LoadedConfig
from guardmail.control.client import NoDaemon, call
from guardmail.control.protocol import (
    Refused,
    error_answer,
    file_report_answer,
    offender_list,
    parse_report,
)
from guardmail.control.server import MAX_LINE
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import PeerError

HOST_NAME = "guardmail"
EXTENSION_ID = "guardmail-report@guardmail.net"
LENGTH = struct.Struct("=I")  # native byte order, as Firefox and Thunderbird write it
MAX_REPLY = 1024 * 1024  # webextensions.native-messaging.max-input-message-bytes
MAX_REQUEST = MAX_LINE


class FramingError(PeerError):
    """The extension's side of stdin broke the length + JSON framing."""


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(stream: BinaryIO) -> Any:
    """The next message's JSON value, or None at a clean end of input."""
    head = _read_exactly(stream, LENGTH.size)
    if not head:
        return None
    if len(head) < LENGTH.size:
        raise FramingError(f"input ended inside a length prefix ({len(head)} of 4 bytes)")
    (size,) = LENGTH.unpack(head)
    if size > MAX_REQUEST:
        raise FramingError(f"a message of {size} bytes is over the {MAX_REQUEST} accepted")
    body = _read_exactly(stream, size)
    if len(body) < size:
        raise FramingError(f"input ended after {len(body)} of a {size}-byte message")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FramingError(f"a message is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise FramingError("a message is JSON nested too deeply") from None


def write_message(stream: BinaryIO, value: dict[str, Any]) -> None:
    data = json.dumps(value, ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_REPLY:
        data = json.dumps(error_answer("too_large", "the answer is too large to send")).encode()
    stream.write(LENGTH.pack(len(data)) + data)
    stream.flush()


class Host:
    """Answers one request at a time: through the daemon, or in-process when none runs."""

    def __init__(self, config: LoadedConfig, *, in_process: bool = False) -> None:
        self.config = config
        self.in_process = in_process

    def handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            return error_answer("bad_request", "the request must be a JSON object")
        if request.get("op") == "ping":
            return {"ok": True, "version": __version__}
        if not self.in_process:
            try:
                return call(self.config.settings.state_dir, request)
            except NoDaemon:
                pass
            except PeerError as exc:
                return error_answer("unavailable", str(exc))
        try:
            return self._in_process(request)
        except Refused as exc:
            return error_answer(exc.kind, exc.error)

    def _in_process(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "offenders":
            return {"ok": True, "offenders": offender_list(self.config)}
        if op == "status":
            return {"ok": True, "status": {"daemon": False, "version": __version__}}
        if op != "report":
            raise Refused("bad_request", f"unknown op {op!r}: use report, offenders or status")
        report = parse_report(request, uid=os.getuid(), via="native host (no daemon)")
        tenant = open_tenant(self.config.settings)
        try:
            result = asyncio.run(
                file_report_answer(report, config=self.config, tenant=tenant, now=datetime.now(UTC))
            )
        finally:
            tenant.close()
        return {"ok": True, "result": result.to_json()}


def serve(stdin: BinaryIO, stdout: BinaryIO, host: Host) -> None:
    """Answer messages until stdin ends; a framing error is answered once, then the host stops."""
    while True:
        try:
            request = read_message(stdin)
        except FramingError as exc:
            write_message(stdout, error_answer("bad_request", str(exc)))
            return
        if request is None:
            return
        write_message(stdout, host.handle(request))
