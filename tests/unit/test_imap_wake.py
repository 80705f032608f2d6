"""What wakes an IMAP folder watcher: a nudge from another thread ends a wait on a quiet socket
at once; news the server tucked into a command's reply is seen once, then forgotten."""

import socket
import threading
import time
from types import SimpleNamespace

from guardmail.channels.imap.wake import Nudge, announced


def test_a_nudge_from_another_thread_ends_a_wait_on_a_quiet_socket() -> None:
    nudge = Nudge()
    ours, theirs = socket.socketpair()
    try:
        timer = threading.Timer(0.1, nudge.set)
        timer.start()
        began = time.monotonic()
        assert nudge.wait(ours, 60) is False  # not the socket: the nudge
        assert time.monotonic() - began < 30  # woken, not timed out
        assert nudge.take() and not nudge.take()  # raised once, then lowered
        theirs.sendall(b"* 3 EXISTS\r\n")
        assert nudge.wait(ours, 60) is True
        timer.join()
    finally:
        ours.close()
        theirs.close()
        nudge.close()
    nudge.set()  # after close: the flag only, never a write to a reused descriptor
    assert nudge.is_set()


def test_exists_in_a_command_reply_is_announced_once() -> None:
    client = SimpleNamespace(_imap=SimpleNamespace(untagged_responses={}))
    assert not announced(client)
    client._imap.untagged_responses.update({"EXISTS": [b"4"], "RECENT": [b"0"], "FLAGS": [b""]})
    assert announced(client)
    assert not announced(client)
    assert client._imap.untagged_responses == {"FLAGS": [b""]}  # the rest is not ours to drop
    assert not announced(object())  # a client without imaplib underneath
