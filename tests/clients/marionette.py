"""A minimal Marionette client (protocol 3): enough to run chrome JavaScript in Thunderbird.

Frames are ``<length>:<json>``; a command is ``[0, id, name, params]`` and its answer
``[1, id, error, result]`` (shared/recipes/thunderbird.md). Thunderbird must be started with
``--marionette -remote-allow-system-access`` for the chrome context.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class MarionetteError(Exception):
    pass


class Marionette:
    def __init__(self, port: int, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._buffer = b""
        self._next = 0
        hello = self._receive()
        if not isinstance(hello, dict) or hello.get("marionetteProtocol") != 3:
            raise MarionetteError(f"unexpected Marionette greeting {hello!r}")
        self.command("WebDriver:NewSession", {"capabilities": {}})
        self.command("Marionette:SetContext", {"value": "chrome"})

    def _receive(self) -> Any:
        while b":" not in self._buffer:
            self._read()
        head, _, rest = self._buffer.partition(b":")
        size = int(head)
        self._buffer = rest
        while len(self._buffer) < size:
            self._read()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return json.loads(data)

    def _read(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise MarionetteError("Marionette closed the connection")
        self._buffer += chunk

    def command(self, name: str, params: dict[str, Any]) -> Any:
        self._next += 1
        data = json.dumps([0, self._next, name, params]).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            answer = self._receive()
            if isinstance(answer, list) and answer[0] == 1 and answer[1] == self._next:
                break
        _, _, error, result = answer
        if error:
            raise MarionetteError(f"{name}: {error}")
        return result

    def run_async(self, script: str, args: list[Any], *, timeout_ms: int = 60000) -> Any:
        """Run chrome JavaScript; it ends by calling ``arguments[arguments.length - 1](value)``."""
        result = self.command(
            "WebDriver:ExecuteAsyncScript",
            {"script": script, "args": args, "scriptTimeout": timeout_ms},
        )
        return result.get("value") if isinstance(result, dict) else result

    def quit(self) -> None:
        try:
            self.command("Marionette:Quit", {"flags": ["eForceQuit"]})
        except (OSError, MarionetteError):
            pass
        self._sock.close()
