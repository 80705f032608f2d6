"""What wakes a folder watcher: news the server tucked into a command's reply, and a local nudge.

Contracts:
- ``announced(client)`` says whether the server sent ``* n EXISTS`` with any command's reply
  since it was last asked, and forgets it. Dovecot runs a SEARCH against its current view of the
  mailbox and syncs the view only when the command ends: mail another session made visible (a
  client that SELECTs and polls INBOX, as Thunderbird or a phone does) is then announced after
  the search results, with the tagged OK, and never again in IDLE. A watcher that enters IDLE
  after such a reply would leave that mail until the next one arrives.
- ``Nudge`` wakes a thread blocked waiting on an IMAP socket, from any thread, without touching
  the connection (which only its own thread may use): one pipe, polled beside the socket.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Any


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
