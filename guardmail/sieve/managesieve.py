"""A small ManageSieve client (RFC 5804): what installing one script needs, nothing more.

STARTTLS (certificate verified, like every guardmail connection), AUTHENTICATE PLAIN,
LISTSCRIPTS, GETSCRIPT, PUTSCRIPT, SETACTIVE, LOGOUT. Scripts travel as literals; a NO
response raises PeerError with the server's text (Pigeonhole puts compile errors there).
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from dataclasses import dataclass

from guardmail.errors import PeerError

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: str  # OK | NO | BYE
    text: str
    lines: tuple[bytes, ...]  # data lines (and literals) before the final one


def _unquote(data: bytes) -> str:
    data = re.sub(rb"^\([^)]*\)\s*", b"", data.strip())  # response code, e.g. (NONEXISTENT)
    if data.startswith(b'"') and data.endswith(b'"') and len(data) >= 2:
        data = re.sub(rb"\\(.)", rb"\1", data[1:-1])
    return data.decode("utf-8", "replace")


def quote(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class ManageSieve:
    def __init__(self, host: str, port: int = 4190, *, timeout: float = 30.0) -> None:
        self.host = host
        self._sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rb")
        self.capabilities: dict[str, str] = {}
        self._read_capabilities(self._response())

    # --- wire ------------------------------------------------------------------------------

    def _line(self) -> bytes:
        line = self._file.readline(1 << 20)
        if not line:
            raise PeerError(f"ManageSieve server {self.host} closed the connection")
        return line.rstrip(b"\r\n")

    def _response(self) -> Response:
        lines: list[bytes] = []
        while True:
            line = self._line()
            literal = _LITERAL.search(line)
            word = line.split(b" ", 1)[0].upper()
            if literal:
                data = self._file.read(int(literal.group(1)))
                self._line()  # the rest of the line after the literal
                if word in (b"OK", b"NO", b"BYE"):
                    return Response(
                        status=word.decode(), text=data.decode(errors="replace"), lines=tuple(lines)
                    )
                lines.append(line[: literal.start()] + data)
                continue
            if word in (b"OK", b"NO", b"BYE"):
                return Response(
                    status=word.decode(), text=_unquote(line[len(word) :]), lines=tuple(lines)
                )
            lines.append(line)

    def _command(self, *parts: bytes) -> Response:
        self._sock.sendall(b" ".join(parts) + b"\r\n")
        response = self._response()
        if response.status != "OK":
            raise PeerError(f"ManageSieve {parts[0].decode()} refused: {response.text}")
        return response

    @staticmethod
    def _literal(data: bytes) -> bytes:
        return b"{%d+}\r\n" % len(data) + data

    def _read_capabilities(self, response: Response) -> None:
        for line in response.lines:
            m = re.match(rb'"([^"]+)"(?:\s+"([^"]*)")?', line)
            if m:
                self.capabilities[m.group(1).decode().upper()] = (m.group(2) or b"").decode()

    # --- commands --------------------------------------------------------------------------

    @property
    def extensions(self) -> list[str]:
        return self.capabilities.get("SIEVE", "").split()

    def starttls(self, ctx: ssl.SSLContext) -> None:
        if "STARTTLS" not in self.capabilities:
            raise PeerError(f"ManageSieve server {self.host} does not offer STARTTLS")
        self._command(b"STARTTLS")
        self._file.close()
        self._sock = ctx.wrap_socket(self._sock, server_hostname=self.host)
        self._file = self._sock.makefile("rb")
        # RFC 5804 2.2: the server sends its capabilities again after the TLS handshake.
        self.capabilities = {}
        self._read_capabilities(self._response())

    def authenticate(self, user: str, password: str) -> None:
        """AUTHENTICATE PLAIN (UTF-8); a refusal is PeerError without the server's text, which
        may echo the credentials."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self._sock.sendall(b"AUTHENTICATE " + quote("PLAIN") + b" " + quote(token) + b"\r\n")
        if self._response().status != "OK":
            raise PeerError(f"ManageSieve server {self.host} refused the login as {user!r}")

    def listscripts(self) -> list[tuple[str, bool]]:
        out = []
        for line in self._command(b"LISTSCRIPTS").lines:
            m = re.match(rb'"((?:[^"\\]|\\.)*)"(\s+ACTIVE)?', line)
            if m:
                out.append((_unquote(b'"' + m.group(1) + b'"'), bool(m.group(2))))
        return out

    def getscript(self, name: str) -> str:
        lines = self._command(b"GETSCRIPT", quote(name)).lines
        return b"\n".join(lines).decode("utf-8", "replace")

    def putscript(self, name: str, text: str) -> None:
        self._command(b"PUTSCRIPT", quote(name), self._literal(text.encode()))

    def setactive(self, name: str) -> None:
        self._command(b"SETACTIVE", quote(name))

    def logout(self) -> None:
        try:
            self._sock.sendall(b"LOGOUT\r\n")
            self._response()
        except (OSError, PeerError):
            pass
        finally:
            # The reader made by makefile() keeps the socket open until it is closed too.
            self._file.close()
            self._sock.close()
