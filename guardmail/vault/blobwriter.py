"""A child process that writes a vault group's blob files, so that the committer thread gives up
the GIL a few times a group instead of about five times a blob (issue 28).

Why: every system call a thread makes releases the GIL, and beside the busy event loop the
committer thread then waits up to a switch interval (5 ms) to get it back: 1,000 file creations
took 15.5 s beside a spinning thread against 40 ms alone (bench/README.md, "syncfs"). The child
has a GIL of its own; the committer hands it the whole group in one pipe write and blocks in one
read for the answer.

Contracts:
- ``BlobWriter.put_many(root, blobs)`` returns only when ``BlobStore(root).put_many(blobs)``
  returned in the child: the very same code, so the same durability contract
  (``guardmail.vault.blobs``: each blob its own temp file, made durable, renamed, its name made
  durable; per-file fsyncs or two syncfs). Anything else raises OSError and the caller's whole
  group fails (``Vault.commit``: ``VaultUnavailable``, nothing journaled): an error in the child
  (its errno and text), the child dead or killed before it answered, an answer that is not one.
  A dead child is reaped, the temp files it left in the request's directories are removed, and
  the next call starts a new one (a child already reaped as dead when a call begins is replaced
  before it: nothing was in flight; one that dies under a call fails that call). At most some
  blobs were renamed into place without an entry, which the retry finds in place (same name,
  same bytes) and makes durable again.
- One request at a time per writer (a lock); each committer thread has its own writer, started
  at its first large group and closed when the thread ends (``guardmail.vault.group``), so a
  tenant's writer never waits for another tenant's disk, and an idle tenant holds no process.
- The child ends with its parent: it reads requests from a pipe only the parent holds open, and
  ends at end of file (the parent closed it, or died: the kernel closes it then). It also asks
  for SIGKILL when its parent thread ends (``PR_SET_PDEATHSIG``; prctl(2) ties that to the
  thread that started it, which closes the writer before it ends anyway). It ignores SIGINT: a
  Ctrl-C of the daemon's terminal lets it finish the group in hand, then the end of file ends it.
- The child touches only the blob store named in each request; request sizes are checked.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from guardmail import faults

_REQUEST = struct.Struct(">IQ")  # header length, payload length
_ANSWER = struct.Struct(">I")
MAX_HEADER = 64 * 1024 * 1024  # a group's names and sizes: ~80 bytes a blob, MAX_ENTRIES blobs
PR_SET_PDEATHSIG = 1
PIPE_BYTES = 1 << 20  # the request pipe's size where allowed (Linux's default maximum)
# Seconds every writer of this process spent in each step of its requests, and their counts
# ("groups", "blobs"): the parent's ("pack", "send", "wait": its request built, written, the
# answer awaited; "total") and the child's, as it reported them ("child.recv" for reading and
# splitting the request, "child.create", "child.sync1", ...: ``BlobStore.put_many``'s laps).
# For benches (bench/xmpp.py); guarded by TIMES_LOCK.
TIMES: dict[str, float] = {}
TIMES_LOCK = threading.Lock()


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of file before the first byte; OSError(EIO) at end
    of file after it."""
    parts: list[bytes] = []
    left = n
    while left:
        got = os.read(fd, min(left, 1 << 20))
        if not got:
            if left == n:
                return None
            raise OSError(errno.EIO, f"end of file after {n - left} of {n} bytes")
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class BlobWriter:
    """The parent's end: a lazily started child, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # children started (for tests and benches)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def put_many(self, root: Path, blobs: Sequence[tuple[bytes, str]]) -> None:
        """``BlobStore(root).put_many(blobs)`` in the child; see the module contract."""
        began = time.perf_counter()
        header = json.dumps(
            {"root": str(root), "shas": [s for _, s in blobs], "sizes": [len(r) for r, _ in blobs]}
        ).encode()
        request = b"".join([_REQUEST.pack(len(header), sum(len(r) for r, _ in blobs)), header])
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                # Two writes and two reads: each gives up the GIL once, whatever the group's size.
                packed = time.perf_counter()
                _write_all(proc.stdin.fileno(), request)
                _write_all(proc.stdin.fileno(), b"".join(r for r, _ in blobs))
                sent = time.perf_counter()
                size = _read_exact(proc.stdout.fileno(), _ANSWER.size)
                body = _read_exact(proc.stdout.fileno(), _ANSWER.unpack(size)[0]) if size else None
                answer = json.loads(body) if body is not None else None
            except (OSError, ValueError, struct.error) as exc:
                self._lost(proc, root, blobs)
                raise OSError(
                    errno.EIO, f"the blob writer (pid {proc.pid}) failed: {exc} ({_how(proc)})"
                ) from exc
            if answer is None:
                self._lost(proc, root, blobs)
                raise OSError(
                    errno.EIO, f"the blob writer (pid {proc.pid}) died mid-group ({_how(proc)})"
                )
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            code = answer.get("errno") if isinstance(answer, dict) else None
            text = answer.get("error") if isinstance(answer, dict) else repr(answer)
            raise OSError(code if isinstance(code, int) and code else errno.EIO, str(text))
        ended = time.perf_counter()
        laps = answer.get("t")
        steps = {"pack": packed - began, "send": sent - packed, "wait": ended - sent}
        steps.update(total=ended - began, groups=1.0)
        if isinstance(laps, dict):
            steps.update({f"child.{k}": v for k, v in laps.items() if isinstance(v, float)})
        with TIMES_LOCK:
            for name, value in steps.items():
                TIMES[name] = TIMES.get(name, 0.0) + value

    def close(self) -> None:
        """End the child (end of file, then SIGKILL if it does not go) and reap it."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _end(proc)

    def _started(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            _end(proc)
        self._proc = proc = subprocess.Popen(
            [sys.executable, "-m", "guardmail.vault.blobwriter", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.started += 1
        _widen(proc.stdin)
        return proc

    def _lost(
        self, proc: subprocess.Popen[bytes], root: Path, blobs: Sequence[tuple[bytes, str]]
    ) -> None:
        """The child failed mid-request: reap it (killed if it lingers), remove the temp files it
        left."""
        self._proc = None
        try:
            proc.wait(timeout=2)  # at end of file it has ended, or is ending: say how
        except subprocess.TimeoutExpired:
            proc.kill()
        _end(proc)
        suffix = f".{proc.pid}."
        for d in {root / sha[:2] for _, sha in blobs}:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if name.startswith(".") and name.endswith(".tmp") and suffix in name:
                    try:
                        os.unlink(d / name)
                    except OSError:
                        pass  # removed at the next start (storage.files.remove_stale_temps)


def _widen(pipe: IO[bytes] | None) -> None:
    """The request pipe made ``PIPE_BYTES`` long where Linux allows: a group's bytes then go in
    one write, without waiting for the child to be scheduled to read each 64 KiB (under load,
    each wait is a scheduling delay: bench/README.md, "xblob"). Not allowed (a user's pipe
    quota, not Linux): the default size, the same requests in more steps."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass


def _how(proc: subprocess.Popen[bytes]) -> str:
    code = proc.returncode
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _end(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve(rfd: int, wfd: int) -> None:
    from guardmail.errors import GuardmailError
    from guardmail.vault.blobs import BlobStore

    stores: dict[str, BlobStore] = {}  # one a root: each remembers its fan-out directories
    while True:
        head = _read_exact(rfd, _REQUEST.size)
        if head is None:
            return  # the parent closed the pipe, or died
        began = time.perf_counter()
        hlen, plen = _REQUEST.unpack(head)
        if hlen > MAX_HEADER:
            raise SystemExit(f"blob writer: a request header of {hlen} bytes")
        header = json.loads(_read_exact(rfd, hlen) or b"null")
        payload = _read_exact(rfd, plen) or b""
        shas, sizes = header["shas"], header["sizes"]
        if sum(sizes) != plen or len(shas) != len(sizes):
            raise SystemExit("blob writer: a request whose sizes do not add up")
        blobs, at = [], 0
        for sha, size in zip(shas, sizes, strict=True):
            blobs.append((payload[at : at + size], sha))
            at += size
        laps = {"recv": time.perf_counter() - began}
        try:
            store = stores.get(header["root"])
            if store is None:
                store = stores[header["root"]] = BlobStore(Path(header["root"]))
            store.put_many(blobs, timing=laps)
            faults.reached("vault.writer")
            answer: dict[str, object] = {"ok": True, "t": laps}
        except OSError as exc:
            answer = {"errno": exc.errno or errno.EIO, "error": str(exc)}
        except GuardmailError as exc:  # a name that is not a SHA-256: the parent's bug
            answer = {"errno": errno.EINVAL, "error": str(exc)}
        body = json.dumps(answer).encode()
        _write_all(wfd, _ANSWER.pack(len(body)) + body)


def main() -> int:
    parent = int(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the end of file on the pipe still ends it
    if os.getppid() != parent:
        return 0  # the parent died before the prctl above
    _serve(sys.stdin.fileno(), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
