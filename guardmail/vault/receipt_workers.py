"""The threads that run every tenant's checks at receipt (``guardmail.vault.receipts``): a few
for the whole daemon, not one per tenant (an ISP's 1,000 tenants kept up to 220 threads of
~40 KB each, and a malloc arena per thread, only to wait).

Contracts:
- Per-tenant order: a tenant's queue is in at most one thread's hands at a time, so its checks
  run in the order they were queued, and a catch-up (the start's query for checks a crash lost)
  runs in that tenant's turn, off the event loop.
- Fairness across tenants (invariant 6): tenants with work wait in a ring; a thread takes the
  first, runs one turn (at most ``BATCH`` checks, ended sooner once ``COMMIT_SECONDS`` of
  checking are done, recorded in one transaction) and puts it back at the end if it has more.
  One tenant's backlog (a first scan's thousands, a sender's slow DNS, each check bounded by
  ``dkimlimits.Limits``) delays another tenant's next check by at most one turn of each tenant
  ahead of it in the ring, never by the length of its backlog. With ``THREADS`` = 2 one tenant
  in a slow turn never holds up the others: it is in one thread's hands, not both.
- Bounded memory: queued checks hold at most ``BACKLOG_BYTES`` of message bytes across all
  tenants; past that a check keeps only (seq, SHA-256) and reads the blob back when its turn
  comes (``receipts.ReceiptChecker.submit``).
- Threads are started when work arrives and none is idle (at most ``threads``), and end after
  ``IDLE_SECONDS`` without work; they are daemon threads (a stopping daemon never waits for
  them: ``ReceiptChecker.close`` bounds the wait and says what it left).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

BACKLOG_BYTES = 64 * 1024 * 1024  # message bytes held by all queued checks; past it, read back
BATCH = 200  # checks recorded in one transaction, and so in one tenant's turn, at most
COMMIT_SECONDS = 1.0  # checking time after which a turn records what it did and ends
IDLE_SECONDS = 60.0  # a thread with nothing to do this long ends
THREADS = 2  # at most, for all tenants


class Queue(Protocol):
    """One tenant's checks, as the workers see them (``receipts.ReceiptChecker``)."""

    def turn(self) -> None:
        """Run one turn; never raises."""
        ...

    def has_work(self) -> bool:
        """Work left for another turn (asked holding ``Workers.cond``)."""
        ...


class Workers:
    """The ring of tenants with work and the threads that serve it; ``cond`` is the one lock
    of every queue served here (held only to move jobs, never while checking)."""

    def __init__(self, *, threads: int = THREADS, backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.cond = threading.Condition()
        self.threads = threads
        self.backlog_bytes = backlog_bytes
        self.held = 0  # message bytes held by queued checks, all tenants (under ``cond``)
        self.running = 0  # threads alive
        self._idle = 0  # threads waiting for work
        self._ready: deque[Queue] = deque()
        self._scheduled: set[int] = set()  # id() of the queues in the ring or in a turn

    def ready(self, queue: Queue) -> None:
        """``queue`` has work: ring it (once) and make sure a thread will serve it. The caller
        holds ``cond``."""
        if id(queue) in self._scheduled:
            return  # in the ring already, or in a turn that looks again at its end
        self._scheduled.add(id(queue))
        self._ready.append(queue)
        if self._idle == 0 and self.running < self.threads:
            self.running += 1
            threading.Thread(target=self._run, name="receipts", daemon=True).start()
        self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                self._idle += 1
                self.cond.wait_for(lambda: self._ready, IDLE_SECONDS)
                self._idle -= 1
                if not self._ready:
                    self.running -= 1
                    return
                queue = self._ready.popleft()
            try:
                queue.turn()
            except Exception:  # a bug in one tenant's turn must not end the others' thread
                logging.getLogger("guardmail").exception("receipt.error")
            finally:  # turn() contains its errors; this keeps the ring right regardless
                with self.cond:
                    # Asked under the lock: a submit during the turn did not ring the queue
                    # (it was scheduled), so its work is seen here, never stranded.
                    self._scheduled.discard(id(queue))
                    if queue.has_work():
                        self.ready(queue)
                    self.cond.notify_all()


_shared: Workers | None = None
_shared_lock = threading.Lock()


def shared() -> Workers:
    """The daemon's workers (made at first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Workers()
        return _shared
