"""What wakes a folder watcher: news the server tucked into a command's reply, and a local nudge.

Contracts:
- ``announced(client)`` says whether the server sent ``* n EXISTS`` with any command's reply
  since it was last asked, and forgets it. Dovecot runs a SEARCH against its current view of the
  mailbox and syncs the view only when the command ends: mail another session made visible (a
  client that SELECTs and polls INBOX, as Thunderbird or a phone does) is then announced after
  the search results, with the tagged OK, and never again in IDLE. A watcher that enters IDLE
  after such a reply would leave that mail until the next one arrives.
- ``idle`` returns when the server announces news (EXISTS, RECENT), the nudge is raised, the
  watcher is stopping or ``seconds`` pass; a BYE or a closed connection is ConnectionError.
- ``Nudge`` wakes a thread blocked waiting on an IMAP socket, from any thread, without touching
  the connection (which only its own thread may use): one pipe, polled beside the socket.
"""

from __future__ import annotations

import imaplib
import os
import select
import threading
import time
from typing import Any

from imapclient import IMAPClient
from imapclient.imapclient import _parse_untagged_response

# How long an IDLE wait blocks before looking at the stop flag (stop also closes the socket).
IDLE_SLICE = 5.0


def announced(client: Any) -> bool:
    """True if an untagged EXISTS came with a command's reply since the last call (cleared).

    imaplib files untagged responses it does not consume by name; nothing else reads EXISTS.
    """
    responses = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    if not isinstance(responses, dict):
        return False
    responses.pop("RECENT", None)  # kept by imaplib too: drop it so the dict does not grow
    return bool(responses.pop("EXISTS", None))


class Nudge:
    """A flag another thread raises, whose raising also wakes ``wait`` at once."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()  # no write to a closed (perhaps reused) descriptor
        self._closed = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def set(self) -> None:
        self._flag.set()
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._write, b"!")
            except OSError:
                pass  # the pipe is full: it is woken already

    def take(self) -> bool:
        """Whether it was raised since the last take (lowered again)."""
        raised = self._flag.is_set()
        self._flag.clear()
        self._drain()
        return raised

    def is_set(self) -> bool:
        return self._flag.is_set()

    def wait(self, sock: Any, timeout: float) -> bool:
        """Block until ``sock`` is readable (True), or the nudge is raised or ``timeout`` passes
        (False). ``sock`` is anything with ``fileno()``."""
        if self._flag.is_set():
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        poller.register(self._read, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)}
        return sock.fileno() in ready

    def close(self) -> None:
        """Free the pipe; ``set`` still raises the flag afterwards, ``wait`` must not be used."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._read)
            os.close(self._write)

    def _drain(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                while os.read(self._read, 4096):
                    pass
            except OSError:
                pass  # empty (BlockingIOError)


def idle(client: IMAPClient, *, seconds: float, stopping: threading.Event, nudge: Nudge) -> None:
    """One IDLE of at most ``seconds``, ended by news, the nudge or ``stopping``."""
    client.idle()
    deadline = time.monotonic() + seconds
    # Dovecot often sends "* N EXISTS" in the same packet as "+ idling"; imapclient's idle()
    # leaves that line in imaplib's read buffer, where idle_check (which waits on the raw
    # socket) never looks. Read what is already buffered first.
    pending = _buffered_responses(client)
    try:
        while not stopping.is_set() and time.monotonic() < deadline:
            if pending:
                responses, pending = pending, []
            elif not nudge.wait(client.socket(), IDLE_SLICE):
                if nudge.is_set():
                    break  # asked to look now (the rules changed)
                continue  # a quiet slice: look at the stop flag and the deadline
            else:
                responses = client.idle_check(timeout=0)
                if not responses:
                    # Readable, yet nothing to read: imapclient swallows EOF in idle_check.
                    raise ConnectionError("connection closed during IDLE")
            if any(_is_bye(r) for r in responses):
                raise ConnectionError("server said BYE during IDLE")
            if any(_is_news(r) for r in responses):
                break
    finally:
        if not stopping.is_set():
            client.idle_done()


def _is_news(response: Any) -> bool:
    return (
        isinstance(response, tuple)
        and len(response) >= 2
        and response[1]
        in (
            b"EXISTS",
            b"RECENT",
        )
    )


def _buffered_responses(client: IMAPClient) -> list[Any]:
    """Untagged responses already sitting in imaplib's buffer, read without blocking."""
    sock = client.socket()
    responses: list[Any] = []
    sock.setblocking(False)
    try:
        while True:
            try:
                line = client._imap._get_line()
            except (OSError, imaplib.IMAP4.abort):
                break  # nothing (more) buffered, or an incomplete line: idle_check takes over
            responses.append(_parse_untagged_response(line))
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
    return responses


def _is_bye(response: Any) -> bool:
    return isinstance(response, tuple) and len(response) >= 1 and response[0] == b"BYE"
