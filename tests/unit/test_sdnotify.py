"""sd_notify: the exact datagrams systemd would receive, read from a real AF_UNIX socket."""

import asyncio
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guardmail.daemon.sdnotify import Notifier, watchdog_loop


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket, at ``tmp_path/notify``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def nothing_waiting(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)
    return False


def notifier_for(sock: socket.socket, **env: str) -> Notifier:
    return Notifier.from_env(
        {"NOTIFY_SOCKET": sock.getsockname(), **env}, monotonic_usec=lambda: 42
    )


@pytest.mark.parametrize(
    ("send", "datagram"),
    [
        (lambda n: n.ready("watching 2 Maildirs"), b"READY=1\nSTATUS=watching 2 Maildirs"),
        (lambda n: n.status("rescanning"), b"STATUS=rescanning"),
        (lambda n: n.status("two\nlines"), b"STATUS=two lines"),
        (lambda n: n.watchdog(), b"WATCHDOG=1"),
        (lambda n: n.reloading(), b"RELOADING=1\nMONOTONIC_USEC=42"),
        (lambda n: n.stopping(), b"STOPPING=1"),
        (lambda n: n.notify("STATUS=ü", "ERRNO=5"), "STATUS=ü\nERRNO=5".encode()),
    ],
    ids=["ready", "status", "status-newline", "watchdog", "reloading", "stopping", "raw"],
)
def test_each_call_sends_one_datagram_with_exactly_these_bytes(
    manager: socket.socket, send: Callable[[Notifier], bool], datagram: bytes
) -> None:
    notifier = notifier_for(manager)
    assert send(notifier) is True
    assert received(manager) == datagram
    assert nothing_waiting(manager)


def test_abstract_socket_named_with_at_sign_is_reached() -> None:
    name = f"guardmail-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert received(sock) == b"READY=1\nSTATUS=up"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval() is None


def test_relative_notify_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "run/notify"})
    assert not notifier.enabled and notifier.ready("x") is False
    assert "sdnotify.unsupported_socket" in caplog.text


def test_unreachable_socket_is_logged_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.watchdog() is False
    [record] = caplog.records
    assert record.getMessage() == "sdnotify.send_failed"
    assert vars(record)["gm_fields"] == {
        "message": "WATCHDOG=1",
        "error": "No such file or directory",
    }


@pytest.mark.parametrize(
    ("env", "pid", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # a parent's watchdog
        ({"WATCHDOG_USEC": "500000"}, 7, 0.25),
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "-5"}, 7, None),
        ({"WATCHDOG_USEC": "soon"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    env: dict[str, str], pid: int, interval: float | None
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=pid)
    assert notifier.watchdog_interval() == interval


def test_watchdog_interval_defaults_to_checking_this_process(manager: socket.socket) -> None:
    mine = notifier_for(manager, WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid()))
    assert mine.watchdog_interval() == 2.0


def test_watchdog_loop_pings_from_the_event_loop_until_cancelled(manager: socket.socket) -> None:
    notifier = notifier_for(manager)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        manager.setblocking(False)
        task = asyncio.create_task(watchdog_loop(notifier, 0.01))
        pings = [await asyncio.wait_for(loop.sock_recv(manager, 4096), 5) for _ in range(3)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pings

    assert asyncio.run(main()) == [b"WATCHDOG=1"] * 3


def test_a_blocked_event_loop_sends_no_watchdog_ping(manager: socket.socket) -> None:
    notifier = notifier_for(manager)

    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(notifier, 0.01))
        await asyncio.sleep(0)  # the first ping goes out at once
        assert received(manager) == b"WATCHDOG=1"
        # Hold the loop without awaiting, as a hung handler would: no ping can be sent.
        manager.settimeout(0.2)
        with pytest.raises(TimeoutError):
            received(manager)
        task.cancel()

    asyncio.run(main())
