"""Processes the IMAP benchmark starts: a private Dovecot (tests' harness), guardmail, imapfilter.

Every process is started here and stopped by its own PID (SIGTERM, then SIGKILL after a timeout);
each wait has a deadline and fails with the tail of the process's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/imap.py` puts only bench/ on the path
    sys.path.insert(0, str(ROOT))

from tests.servers.dovecot import Dovecot, start_dovecot  # noqa: E402

__all__ = ["Dovecot", "start_dovecot"]

IMAPFILTER = "imapfilter"
# Limits for hundreds of IMAP connections (one imap process each); the defaults stop at 100.
MANY_CONNECTIONS = """\
default_process_limit = 1000
default_client_limit = 5000
default_vsz_limit = 512M
mail_max_userip_connections = 100
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}
service imap {
  process_limit = 1024
}
"""
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


class BenchError(Exception):
    """A process did not do what the benchmark waited for in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEvent:
    at: float  # wall clock (time.time()) of the log line
    name: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    rss_kib: int
    hwm_kib: int
    threads: int


def memory(pid: int) -> Memory:
    """VmRSS, VmHWM and Threads from /proc/PID/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return Memory(rss_kib=values["VmRSS"], hwm_kib=values["VmHWM"], threads=values["Threads"])


def parse_logfmt(line: str) -> LogEvent | None:
    fields = {}
    for key, value in _FIELD.findall(line):
        fields[key] = json.loads(value) if value.startswith('"') else value
    if "time" not in fields or "event" not in fields:
        return None
    at = datetime.fromisoformat(fields.pop("time")).timestamp()
    return LogEvent(at=at, name=fields.pop("event"), fields=fields)


class Proc:
    """A child process with its output in a file; stopped by PID."""

    def __init__(
        self, argv: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.log = log
        self.started = time.time()
        self.started_perf = time.perf_counter()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for(self, done: Callable[[], bool], *, timeout: float, what: str) -> float:
        """Poll ``done`` every 10 ms; return seconds since start; BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.proc.poll() is not None:
                raise BenchError(f"{what}: process exited {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.01)
        return time.perf_counter() - self.started_perf

    def stop(self, *, timeout: float = 30.0) -> float:
        """SIGTERM (SIGKILL after ``timeout``); return the seconds it took to exit."""
        began = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise BenchError(f"pid {self.pid} ignored SIGTERM for {timeout:.0f} s") from None
        return time.perf_counter() - began


class Guardmail(Proc):
    """``python -m guardmail -c CONFIG run``; its log (logfmt) is stderr."""

    def __init__(self, config: Path, log: Path, *, tree: Path = ROOT) -> None:
        # Another checkout (a baseline) runs from its own directory, ahead of the installed one.
        env = None if tree == ROOT else {**os.environ, "PYTHONPATH": str(tree)}
        argv = [sys.executable, "-m", "guardmail", "-c", str(config), "run"]
        super().__init__(argv, log, env=env, cwd=tree)
        self._seen = 0
        self._events: list[LogEvent] = []

    def events(self, name: str | None = None) -> list[LogEvent]:
        text = self.text()
        complete = text[: text.rfind("\n") + 1]
        for line in complete[self._seen :].splitlines():
            parsed = parse_logfmt(line)
            if parsed is not None:
                self._events.append(parsed)
        self._seen = len(complete)
        return [e for e in self._events if name is None or e.name == name]


def write_guardmail_config(
    directory: Path, port: int, accounts: list[tuple[str, str]], *, scan_existing: bool = True
) -> Path:
    """A config watching each (user, password) INBOX on loopback, one offender to quarantine."""
    secrets = directory / "secrets"
    secrets.mkdir(mode=0o700)
    lines = [
        f"state_dir: {directory / 'var'}",
        "offenders:",
        "  - name: Bench Offender",
        "    addresses: [stalker@example.net]",
        "sources:",
        "  imap:",
    ]
    for user, password in accounts:
        pw = secrets / user
        pw.write_text(password + "\n")
        pw.chmod(0o600)
        lines += [
            f"    - name: {user}",
            "      host: 127.0.0.1",
            f"      port: {port}",
            "      tls: none",
            f"      username: {user}",
            f"      password_file: {pw}",
            f"      scan_existing: {'true' if scan_existing else 'false'}",
        ]
    config = directory / "guardmail.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


IMAPFILTER_CONFIG = """\
options.timeout = 60
options.info = false
options.starttls = false
options.certificates = false
options.subscribe = false
acc = IMAP {{ server = '127.0.0.1', port = {port}, username = '{user}', password = '{password}' }}
local function sweep()
  local found = acc.INBOX:contain_from('stalker@example.net')
  found:move_messages(acc['Quarantine'])
end
sweep()
{loop}
"""
IMAPFILTER_LOOP = """\
print('ready')
io.stdout:flush()
while true do
  if not acc.INBOX:enter_idle() then error('server has no IDLE') end
  sweep()
end
"""


class Imapfilter(Proc):
    """imapfilter with a config that moves the offender's mail to Quarantine: once, or in an
    IDLE loop (prints ``ready`` after its first sweep)."""

    def __init__(self, directory: Path, port: int, user: str, password: str, *, idle: bool) -> None:
        home = directory / f"home-{user}"
        home.mkdir(mode=0o700)
        config = home / "config.lua"
        loop = IMAPFILTER_LOOP if idle else ""
        config.write_text(
            IMAPFILTER_CONFIG.format(port=port, user=user, password=password, loop=loop)
        )
        config.chmod(0o600)
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        super().__init__(
            [IMAPFILTER, "-c", str(config)], directory / f"imapfilter-{user}.log", env=env
        )

    def wait_ready(self, *, timeout: float) -> float:
        return self.wait_for(lambda: "ready" in self.text(), timeout=timeout, what="imapfilter")

    def wait_exit(self, *, timeout: float) -> float:
        """Seconds from start to exit; BenchError if it fails or takes longer than ``timeout``."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"imapfilter still running after {timeout:.0f} s") from None
        took = time.perf_counter() - self.started_perf
        if code != 0:
            raise BenchError(f"imapfilter exited {code}:\n{self.tail()}")
        return took


def dovecot_warnings(server: Dovecot) -> Counter[str]:
    """Warning/error/fatal lines in Dovecot's log, counted without time, user and session."""
    found: Counter[str] = Counter()
    for line in server.log().splitlines():
        if re.search(r"\b(Warning|Error|Fatal|Panic):", line):
            text = re.sub(r"^\w{3} \d\d \d\d:\d\d:\d\d ", "", line)
            found[re.sub(r"^([\w-]+)(\([^)]*\))?(<[^>]*>)*:", r"\1:", text)[:240]] += 1
    return found


def guardmail_problems(daemon: Guardmail) -> Counter[str]:
    """Warning and error events in guardmail's log, counted by event name and error text."""
    found: Counter[str] = Counter()
    for e in daemon.events():
        if e.fields.get("level") in ("warning", "error"):
            found[f"{e.name}: {e.fields.get('error', '')}"[:240]] += 1
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (/proc/PID/stat), all threads:
    on a machine others load, a figure their load hardly moves (wall time it does)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


@contextlib.contextmanager
def inotify_instances(extra: int, *, raise_limit: bool) -> Iterator[str]:
    """Room for ``extra`` more inotify instances of one user for the duration, restored after.

    Every Dovecot imap process here runs as the ``dovecot`` user and IDLE takes an inotify
    instance each; past ``fs.inotify.max_user_instances`` (128 by default) Dovecot warns and
    falls back to checking the mailbox every 30 s (``mailbox_idle_check_interval``). An ISP's
    Dovecot with one vmail user needs the same sysctl. Yields a line saying what was done.
    """
    try:
        current = int(INOTIFY_INSTANCES.read_text())
    except (OSError, ValueError):
        yield "fs.inotify.max_user_instances unreadable; left as it is"
        return
    wanted = current + extra  # others (other Dovecots, watchdog) may already use some
    if not raise_limit:
        yield f"fs.inotify.max_user_instances = {current}, left as it is (--keep-inotify-limit)"
        return
    try:
        INOTIFY_INSTANCES.write_text(f"{wanted}\n")
    except OSError as exc:
        yield f"fs.inotify.max_user_instances = {current}; could not raise it: {exc}"
        return
    try:
        yield f"fs.inotify.max_user_instances raised {current} -> {wanted} for this part (restored)"
    finally:
        INOTIFY_INSTANCES.write_text(f"{current}\n")


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else f"exit {done.returncode}"


def machine_lines() -> list[str]:
    """nproc, CPU, memory, file system of the temp dir, and the versions of what is measured."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    fs = _first_line(["stat", "-f", "-c", "%T", "/tmp"])
    imapclient_version = _first_line(
        [sys.executable, "-c", "import imapclient; print(imapclient.__version__)"]
    )
    return [
        f"machine:    nproc={os.cpu_count()}  {cpu}  RAM {int(mem) // 1024} MiB  /tmp on {fs}",
        f"dovecot:    {_first_line(['dovecot', '--version'])}",
        f"imapfilter: {_first_line([shutil.which(IMAPFILTER) or IMAPFILTER, '-V'])}",
        f"guardmail:  {_first_line([sys.executable, '-m', 'guardmail', '--version'])}"
        f"  (Python {sys.version.split()[0]}, imapclient {imapclient_version})",
    ]


@contextlib.contextmanager
def workspace(
    users: dict[str, str], extra_conf: str = ""
) -> Iterator[tuple[Dovecot, Path, contextlib.ExitStack]]:
    """A Dovecot and a temp dir, both removed on exit; the stack stops what is pushed on it."""
    tmp = Path(tempfile.mkdtemp(prefix="gm-bench-"))
    try:
        server = start_dovecot(users, extra_conf=extra_conf)
        try:
            with contextlib.ExitStack() as stack:
                yield server, tmp, stack
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stop_quietly(proc: Proc) -> None:
    try:
        proc.stop()
    except BenchError as exc:
        print(f"  warning: {exc}", file=sys.stderr)
