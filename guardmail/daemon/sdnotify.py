"""sd_notify: telling systemd (``Type=notify``) that the daemon is ready, alive, reloading or
stopping, without libsystemd.

Contracts:
- Each call sends one datagram over ``AF_UNIX``/``SOCK_DGRAM`` to the socket named by
  ``NOTIFY_SOCKET``: a filesystem path (``/run/systemd/notify``) or, when it starts with ``@``,
  an abstract socket. Assignments are joined by newlines, as ``sd_notify(3)`` sends them.
- Without ``NOTIFY_SOCKET`` (not started by systemd, or ``NotifyAccess=none``), or with a value
  that is neither of those forms, every call is a no-op that returns False.
- Sending never raises: a lost notification must not stop the daemon. A failure is logged and
  the call returns False; systemd then sees a missed watchdog ping or start-up timeout and acts.
- ``watchdog_interval()`` follows ``sd_watchdog_enabled(3)``: ``WATCHDOG_USEC`` applies only when
  ``WATCHDOG_PID`` is unset or names this process, and pings are due at half that interval.
- ``watchdog_loop`` pings from the asyncio event loop itself, so a loop that hangs stops pinging
  and systemd kills and restarts the service (``WatchdogSec=``, ``Restart=on-failure``).
- The environment, pid and clock are parameters (``Notifier.from_env``), so tests need no mocks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from guardmail.logs import event

# Seconds a send may block when systemd's receive queue is full; a notification that cannot be
# delivered in that time is dropped rather than stall the event loop.
_SEND_TIMEOUT = 1.0


def _monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC= against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _socket_address(value: str | None) -> str | None:
    """The address to send to for a NOTIFY_SOCKET value, or None if there is none usable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    event("sdnotify.unsupported_socket", level=logging.WARNING, notify_socket=value)
    return None


def _one_line(text: str) -> str:
    """A STATUS= value: newlines would start a new assignment, so they become spaces."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends state changes to the service manager; inert when not started by systemd."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        """``address``: a socket path, or ``\\0name`` for an abstract socket; None disables.

        Prefer ``from_env``, which reads and checks what systemd passes.
        """
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._monotonic_usec = monotonic_usec

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        pid: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> Notifier:
        """A Notifier for what systemd put in the environment (``os.environ`` by default).

        ``WATCHDOG_USEC`` counts only if ``WATCHDOG_PID`` is unset or equals ``pid`` (this
        process by default): a watchdog meant for a parent is not ours to feed.
        """
        env = os.environ if environ is None else environ
        own_pid = os.getpid() if pid is None else pid
        watchdog: int | None = None
        usec, wpid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(own_pid)):
            watchdog = int(usec)
        return cls(
            _socket_address(env.get("NOTIFY_SOCKET")),
            watchdog_usec=watchdog,
            monotonic_usec=monotonic_usec,
        )

    @property
    def enabled(self) -> bool:
        """True when notifications go somewhere."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; True if it was sent."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto(data, self.address)
        except OSError as exc:
            event(
                "sdnotify.send_failed",
                level=logging.WARNING,
                message=assignments[0] if assignments else "",
                error=exc.strerror or str(exc),
            )
            return False
        return True

    def ready(self, status: str) -> bool:
        """Start-up is complete (or a reload is): ``READY=1`` with a status line."""
        return self.notify("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        """A free-form status line, shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Still alive: ``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        """A reload started; send ``ready()`` when it is done.

        ``MONOTONIC_USEC=`` is required by systemd 253+ for ``Type=notify-reload`` and ignored
        by older managers, which only read ``RELOADING=1``.
        """
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}")

    def stopping(self) -> bool:
        """Shutdown started: ``STOPPING=1``."""
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec=``), or None if not asked."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Send ``WATCHDOG=1`` now and every ``interval`` seconds until cancelled.

    Runs on the event loop on purpose: if the loop hangs, the pings stop and systemd restarts
    the daemon.
    """
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)
