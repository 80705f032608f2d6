"""A loopback TCP proxy in front of a real server that misbehaves when the test says so.

The test arms a ``Fault`` at run time (``proxy.arm(...)``); until then, and once the fault has
struck ``times`` connections, bytes pass through unchanged. A fault watches one direction of
every open connection (``down``: from the server, ``up``: from the client) and strikes either
after ``after`` bytes counted from the moment it was armed, or where ``pattern`` first appears
(plus ``keep`` bytes of it and past it: a literal cut in the middle; ``skip`` occurrences let
through first). Everything before that point is forwarded, nothing after it; then:

- ``close``  both sockets are shut down (FIN): the peer sees the server hang up;
- ``reset``  the client's socket is closed with SO_LINGER 0 (RST), the server's closed;
- ``stall``  nothing more is forwarded either way, both sockets stay open (a hung server, a TLS
             handshake that never ends) until the peer gives up or the proxy stops;
- ``reply``  ``reply`` is sent to the client in the server's place, then both are closed (a next
             hop answering 4xx; the server never sees what struck it).

Threads with blocking sockets: two per connection, one accepting. ``stop()`` closes everything.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass
from typing import Literal

from tests.servers.ports import free_ports

Direction = Literal["down", "up"]
Action = Literal["close", "reset", "stall", "reply"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    action: Action
    direction: Direction = "down"
    after: int | None = None  # strike after this many bytes (counted from arming)
    pattern: bytes = b""  # or at the first occurrence of this
    keep: int = 0  # bytes forwarded from the pattern's start before striking
    reply: bytes = b""  # for "reply": what the client gets instead
    times: int = 1  # connections it strikes before the proxy passes traffic again
    skip: int = 0  # occurrences of ``pattern`` (over all connections) let through first

    def __post_init__(self) -> None:
        if (self.after is None) == (not self.pattern):
            raise ValueError("a Fault needs exactly one of after= and pattern=")


class _Armed:
    """The fault in force and how many more connections it may strike."""

    def __init__(self, fault: Fault, generation: int) -> None:
        self.fault = fault
        self.generation = generation
        self.left = fault.times
        self.skip = fault.skip


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.stalled = threading.Event()
        self.done = False


class FaultProxy:
    """Listens on a free loopback port and forwards to ``127.0.0.1:target_port``."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        (self.port,) = free_ports(1)
        self.target = (target_host, target_port)
        self.connections = 0  # accepted so far
        self.struck = 0  # connections a fault struck so far
        self._lock = threading.Lock()
        self._armed: _Armed | None = None
        self._generation = 0
        self._links: list[_Link] = []
        self._struck_event = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True, name="faultproxy").start()

    # --- the test's side ------------------------------------------------------------------

    def arm(self, fault: Fault) -> None:
        """From now on, ``fault`` strikes the next ``fault.times`` connections it matches."""
        with self._lock:
            self._generation += 1
            self._armed = _Armed(fault, self._generation)

    def pass_through(self) -> None:
        """Disarm: new traffic passes (stalled connections stay stalled)."""
        with self._lock:
            self._generation += 1
            self._armed = None

    def wait_struck(self, count: int = 1, *, timeout: float = 20.0) -> None:
        """Until faults have struck ``count`` connections in all (AssertionError otherwise)."""
        with self._struck_event:
            if not self._struck_event.wait_for(lambda: self.struck >= count, timeout):
                raise AssertionError(f"the fault struck {self.struck} of {count} in {timeout}s")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            links, self._links = self._links, []
        self._listener.close()
        for link in links:
            _close(link.client)
            _close(link.server)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the threads -------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            link = _Link(client, server)
            with self._lock:
                if self._stopping:
                    _close(client)
                    _close(server)
                    return
                self.connections += 1
                self._links.append(link)
            for direction in ("up", "down"):
                threading.Thread(
                    target=self._pump, args=(link, direction), daemon=True, name="faultproxy"
                ).start()

    def _pump(self, link: _Link, direction: Direction) -> None:
        src, dst = (link.client, link.server) if direction == "up" else (link.server, link.client)
        seen = 0  # bytes forwarded in this direction
        generation = 0  # the fault the two below belong to
        limit: int | None = None  # where forwarding stops, once known
        tail = b""  # the last bytes forwarded, for a pattern split over reads
        try:
            while data := src.recv(65536):
                if link.stalled.is_set():
                    continue  # swallowed: a hung peer reads and never answers
                with self._lock:
                    armed = self._armed
                if armed is None or armed.fault.direction != direction:
                    dst.sendall(data)
                    seen += len(data)
                    continue
                fault = armed.fault
                if armed.generation != generation:
                    generation, tail = armed.generation, b""
                    limit = seen + fault.after if fault.after is not None else None
                if limit is None:
                    window = tail + data
                    at = window.find(fault.pattern)
                    if at >= 0:
                        limit = seen - len(tail) + at + fault.keep
                    else:
                        tail = window[len(window) - len(fault.pattern) + 1 :]
                if limit is None or limit > seen + len(data):
                    dst.sendall(data)
                    seen += len(data)
                    continue
                part = data[: max(0, limit - seen)]
                if part:
                    dst.sendall(part)
                    seen += len(part)
                if not self._strike(armed):
                    # Skipped, or another connection took the last strike: look for the next
                    # occurrence (a second one in this same read is not seen).
                    dst.sendall(data[len(part) :])
                    seen += len(data) - len(part)
                    if fault.pattern:
                        limit, tail = None, b""
                    continue
                self._act(link, fault)
                if fault.action != "stall":
                    return
        except OSError:
            pass
        self._finish(link)

    def _strike(self, armed: _Armed) -> bool:
        with self._lock:
            if self._armed is not armed or armed.left <= 0:
                return False
            if armed.skip > 0:
                armed.skip -= 1
                return False
            armed.left -= 1
            if armed.left == 0:
                self._armed = None
            self.struck += 1
            self._struck_event.notify_all()
        return True

    def _act(self, link: _Link, fault: Fault) -> None:
        if fault.action == "stall":
            link.stalled.set()
            return
        if fault.action == "reply":
            try:
                link.client.sendall(fault.reply)
            except OSError:
                pass
        if fault.action == "reset":
            with self._lock:  # first: our other thread must not close it gracefully
                link.done = True
                if link in self._links:
                    self._links.remove(link)
            try:
                link.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                link.client.shutdown(socket.SHUT_RD)  # wakes our other thread, sends nothing
            except OSError:
                pass
            link.client.close()  # linger 0: RST
            _close(link.server)
            return
        self._finish(link)

    def _finish(self, link: _Link) -> None:
        with self._lock:
            if link.done:
                return
            link.done = True
            if link in self._links:
                self._links.remove(link)
        _close(link.client)
        _close(link.server)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
