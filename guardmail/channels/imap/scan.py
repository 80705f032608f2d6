"""Reading many UIDs of a folder one step ahead of archiving and acting on them.

A first scan, a re-judging or a long outage leaves thousands of UIDs to judge. Reading them
(header FETCHes, whole FETCHes of the offenders) and acting on them (the vault's fsyncs, the
UID MOVE) took turns on one connection; ``Reader`` reads on a second connection of its own, in
its own thread, while the watcher's connection archives and moves the chunk read before.

Contracts:
- ``read_steps`` gives, in UID order, ``Chunk`` (offender UIDs with their whole messages, to
  archive and then act on) and ``Point`` (a checkpoint the folder may move to once every chunk
  before it is done: below the first offender not yet given out, or the batch's last UID).
  Whoever handles the steps in that order never moves the checkpoint past an unhandled offender.
- On the Reader's own connection the next header batch's FETCH is sent before the batch before
  it is judged (``read_steps(ahead=True)``): the server reads headers while this side judges.
  Its reply is read before any other command (two commands' untagged FETCH replies would mix);
  a caller that reads on the watcher's connection asks for no read-ahead.
- The reader never changes the folder: it EXAMINEs it (read-only) and fetches with PEEK. If the
  folder's UIDVALIDITY on its connection differs from the watcher's, it fails with
  ``ConnectionError`` rather than give UIDs of another folder generation.
- At most ``AHEAD`` chunks wait between the threads, so memory holds at most ``AHEAD + 2``
  chunks (batch.py bounds each); checkpoints do not count (a few bytes, one a header batch),
  so the reader goes on judging headers while the chunk before is archived.
- A failure of the reader reaches the watcher as the same exception, where the step would have
  come; ``close`` (the watcher is done, failed or stopping) stops the reader and logs its
  connection out.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient

from guardmail.channels.imap.batch import HeaderFetch, Pending, fetch_whole
from guardmail.channels.imap.conn import close_quietly

AHEAD = 1
# How often a thread waiting on the other looks whether it should stop.
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Chunk:
    uids: list[int]
    whole: dict[int, dict[bytes, Any]]


@dataclass(frozen=True, slots=True)
class Point:
    uid: int


Step = Chunk | Point
# Judges a header batch ({UID: (header, RFC822.SIZE)}): the (UID, size) of each message to fetch
# whole, in UID order.
Judge = Callable[[dict[int, tuple[bytes, int]]], list[tuple[int, int]]]


def read_steps(
    client: IMAPClient,
    uids: Sequence[int],
    judge: Judge,
    *,
    batch: int,
    max_messages: int,
    max_bytes: int,
    ahead: bool = False,
) -> Iterator[Step]:
    """The steps for ``uids`` (ascending), read on ``client`` a header batch at a time.

    With ``ahead`` (``client`` is the Reader's own connection) the next batch's header FETCH is
    sent before this one is judged, so the server reads while this side judges; it is read
    before anything else is sent (the whole FETCH of a chunk), and may be under way while a
    ``Point`` is handed over (the Reader only queues it; if the steps are dropped, ``close``
    logs the connection out). Without it nothing is under way at any step."""
    parts = [list(uids[start : start + batch]) for start in range(0, len(uids), batch)]
    pending = Pending(max_messages=max_messages, max_bytes=max_bytes)
    following: HeaderFetch | None = None
    for k, part in enumerate(parts):
        headers = (following or HeaderFetch(client, part)).result()
        following = HeaderFetch(client, parts[k + 1]) if ahead and k + 1 < len(parts) else None
        pending.add(judge(headers))
        runs = pending.full()
        if runs and following is not None:
            following.result()  # the connection must be free for the whole FETCHes
        for run in runs:
            yield Chunk(run, fetch_whole(client, run))
        yield Point(pending.first - 1 if pending else part[-1])
    if pending:
        for run in pending.rest():
            yield Chunk(run, fetch_whole(client, run))
        yield Point(uids[-1])


_DONE = object()


class Reader:
    """``read_steps`` on ``client`` (its own connection, the folder EXAMINEd by ``start``) in
    a thread of its own; ``steps()`` yields them in the caller's thread."""

    def __init__(
        self,
        client: IMAPClient,
        steps: Iterator[Step],
        *,
        stopping: threading.Event,
        name: str,
    ) -> None:
        self._client = client
        self._steps = steps
        self._stopping = stopping  # the watcher's: it is stopping
        self._closed = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue()
        self._room = threading.Semaphore(AHEAD)  # chunks the reader may hand over unhandled
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def start(
        cls,
        client: IMAPClient,
        *,
        folder: str,
        uidvalidity: int,
        read: Callable[[IMAPClient], Iterator[Step]],
        stopping: threading.Event,
        name: str,
    ) -> Reader:
        """EXAMINE ``folder`` on ``client`` and start reading ``read(client)``; the caller
        gives ``client`` up to the Reader (closed by ``close``, or here if this fails)."""
        try:
            selected = client.select_folder(folder, readonly=True)
            if int(selected[b"UIDVALIDITY"]) != uidvalidity:
                raise ConnectionError(f"UIDVALIDITY of {folder} changed while reading it")
        except BaseException:
            close_quietly(client)
            raise
        reader = cls(client, read(client), stopping=stopping, name=name)
        reader._thread.start()
        return reader

    def steps(self) -> Iterator[Step]:
        while True:
            try:
                got = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._stopping.is_set():
                    raise ConnectionError("the watcher is stopping") from None
                continue
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            assert isinstance(got, Chunk | Point)
            if isinstance(got, Chunk):
                self._room.release()  # taken: the reader may read the next one
            yield got

    def close(self) -> None:
        """Stop reading (if it has not finished) and log the connection out."""
        self._closed.set()
        try:
            self._client.socket().shutdown(2)  # socket.SHUT_RDWR: unblocks a read under way
        except (OSError, AttributeError):
            pass
        self._thread.join(timeout=10)
        close_quietly(self._client)

    def _run(self) -> None:
        try:
            for step in self._steps:
                if not self._put(step):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the watcher's thread, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        """Hand ``item`` over, waiting for room if it is a chunk; False once closed."""
        if isinstance(item, Chunk):
            while not self._room.acquire(timeout=POLL_SECONDS):
                if self._closed.is_set():
                    return False
        if self._closed.is_set():
            return False
        self._queue.put(item)
        return True
