"""Mail for the IMAP benchmark: messages, a Maildir filled directly, and the measuring clients.

Latency is measured from the moment APPEND returns. A bare IDLE client is timed to the untagged
EXISTS (``select`` wake-up, microseconds); a mover (guardmail, imapfilter) is timed by polling
``STATUS Quarantine (MESSAGES)`` every ``POLL_SECONDS`` from the appending connection, so its
figures carry that resolution.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

OFFENDER = "stalker@example.net"
QUARANTINE = "Quarantine"
POLL_SECONDS = 0.005
MESSAGE_TIMEOUT = 30.0  # seconds a watcher gets to move one message before it counts as missed
WORDS = (
    "lunch meeting report draft invoice weekend photos garden train ticket concert budget "
    "review friday please thanks soon call later office holiday summer project update notes"
).split()


def offender_message(tag: str) -> bytes:
    """A small message from the offender; ``tag`` makes its bytes (and Message-ID) unique."""
    return (
        f"From: Stalker <{OFFENDER}>\r\nTo: victim@example.org\r\nSubject: bench {tag}\r\n"
        f"Message-ID: <{tag}@bench.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"\r\nI see you ({tag}).\r\n"
    ).encode()


def corpus_message(i: int, rng: random.Random) -> tuple[bytes, bool]:
    """Message ``i`` of a folder to scan: every tenth from the offender; 0.5-4 KB of text."""
    offender = i % 10 == 0
    sender = OFFENDER if offender else f"person{rng.randrange(10**6)}@site{i % 997}.example"
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(80, 650)))
    body = "\r\n".join(words[k : k + 72] for k in range(0, len(words), 72))
    raw = (
        f"Received: from mx{i % 7}.example by mail.example.org; Tue, 01 Dec 2026 09:59:58 +0000\r\n"
        f"From: Person {i} <{sender}>\r\nTo: victim@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <scan{i}@bench.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n"
    ).encode()
    return raw, offender


def fill_maildir(maildir: Path, messages: list[bytes], *, uid: int, gid: int) -> None:
    """Write ``messages`` straight into ``maildir``'s cur/ as the mail user (no flags yet).

    Dovecot finds them at its next sync (``doveadm force-resync``); this is ~100x faster than
    APPENDing 20,000 messages.
    """
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(exist_ok=True)
        os.chown(maildir / sub, uid, gid)
    base = int(time.time())
    for i, raw in enumerate(messages):
        path = maildir / "cur" / f"{base}.M{i}P{os.getpid()}.bench,S={len(raw)}:2,"
        path.write_bytes(raw)
        os.chown(path, uid, gid)


def connect(port: int, user: str, password: str, *, timeout: float = 30.0) -> Any:
    """A logged-in IMAPClient on loopback (plain IMAP)."""
    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=timeout)
    client.login(user, password)
    return client


def count(client: Any, folder: str) -> int:
    """Messages in ``folder`` (STATUS); 0 while the folder does not exist."""
    try:
        status = client.folder_status(folder, [b"MESSAGES"])
    except IMAPClientError:
        return 0
    return int(status[b"MESSAGES"])


def logout(client: Any) -> None:
    try:
        client.logout()
    except (OSError, IMAPClientError):
        pass


def move_latency(client: Any, raw: bytes, *, timeout: float) -> float | None:
    """Seconds from APPEND returning until Quarantine holds one more message; None on timeout."""
    before = count(client, QUARANTINE)
    client.append("INBOX", raw)
    start = time.perf_counter()
    tick = start
    while True:
        if count(client, QUARANTINE) > before:
            return time.perf_counter() - start
        now = time.perf_counter()
        if now - start > timeout:
            return None
        tick += POLL_SECONDS
        time.sleep(max(0.0, tick - now))


@dataclass
class IdleFloor:
    """A bare IDLE client on one account: the floor every IDLE watcher sits on."""

    watcher: Any
    appender: Any

    @classmethod
    def open(cls, port: int, user: str, password: str) -> IdleFloor:
        watcher = connect(port, user, password)
        watcher.select_folder("INBOX")
        watcher.idle()
        return cls(watcher=watcher, appender=connect(port, user, password))

    def latency(self, raw: bytes, *, timeout: float) -> float | None:
        """Seconds from APPEND returning until this client's IDLE reports EXISTS."""
        self.appender.append("INBOX", raw)
        start = time.perf_counter()
        while True:
            left = start + timeout - time.perf_counter()
            if left <= 0:
                return None
            responses = self.watcher.idle_check(timeout=left)
            if any(isinstance(r, tuple) and r[1:2] == (b"EXISTS",) for r in responses):
                return time.perf_counter() - start

    def close(self) -> None:
        try:
            self.watcher.idle_done()
        except (OSError, IMAPClientError):
            pass
        logout(self.watcher)
        logout(self.appender)


class OtherClient:
    """The person's own mail program on an account: INBOX SELECTed read-write (it takes
    \\Recent, moves Maildir's new/ to cur/, syncs Dovecot's index) and searched every
    ``every`` seconds, as Thunderbird or a phone polls. Runs in a thread until ``close``."""

    def __init__(self, port: int, user: str, password: str, *, every: float = 0.02) -> None:
        self.client = connect(port, user, password)
        self.every = every
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"other-{user}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.client.select_folder("INBOX")
            self.client.search(["ALL"])
            self.polls += 1
            self._stop.wait(self.every)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        logout(self.client)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def summary(values: list[float]) -> tuple[float, float, float, float]:
    return (
        percentile(values, 0.5),
        percentile(values, 0.99),
        statistics.fmean(values),
        max(values),
    )
