"""The filters bench/smtp_filter.py sets beside guardmail: rspamd and a bare aiosmtpd relay.

- rspamd: Debian's package (bench/packages.sh), run privately: its own config file, database
  directory, log and milter socket, no Redis, no system service. Only the proxy worker in milter
  mode with ``self_scan`` (no separate normal worker) and the ``multimap`` module with one map
  of type ``from`` (the SMTP envelope sender) over every tenant's offenders, as a prefilter with
  the action ``reject``: the cheapest way rspamd has to refuse mail from a list of senders.
- bare relay: ``python bench/smtp_peers.py relay LISTEN_PORT NEXT_PORT``, an aiosmtpd server
  whose DATA handler re-injects each message through smtplib over kept connections (a shared
  idle list: no more than messages in flight), judging nothing: the floor of any after-queue
  filter built on aiosmtpd.

Both are measured by their whole process tree (``tree_cpu``, ``tree_rss_mb``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RSPAMD = "/usr/bin/rspamd"

RSPAMD_CONF = """\
lua = "{root}/init.lua";
options {{
  pidfile = "{root}/rspamd.pid";
  filters = "";
  dbdir = "{root}/db";
  cache_file = "{root}/db/symbols.cache";
  control_socket = "{root}/db/control.sock mode=0600";
  url_tld = "${{SHAREDIR}}/effective_tld_names.dat";
  dns {{ nameserver = ["127.0.0.1:1"]; timeout = 1s; }}
}}
logging {{ type = "file"; filename = "{root}/rspamd.log"; level = "error"; }}
modules {{ path = "${{PLUGINSDIR}}/multimap.lua"; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
multimap {{
  GUARDMAIL_OFFENDER {{
    type = "from";
    extract_from = "smtp";
    map = "{root}/offenders.map";
    prefilter = true;
    action = "reject";
    message = "Message refused by the recipient's protection";
  }}
}}
worker "rspamd_proxy" {{
  bind_socket = "{socket} mode=0666";
  milter = yes;
  timeout = 120s;
  upstream "local" {{ default = yes; self_scan = yes; }}
  count = 1;
}}
"""


def pids(root_pid: int) -> list[int]:
    """``root_pid`` and its descendants."""
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return found


def tree_cpu(root_pid: int) -> float:
    """User + system CPU seconds of the process tree."""
    total = 0
    for pid in pids(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of the process tree (proportional set size: shared pages split)."""
    total = 0
    for pid in pids(root_pid):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


class Rspamd:
    """A private rspamd (see the module docstring); ``offenders``: the map's addresses."""

    def __init__(self, root: Path, socket: Path, offenders: list[str]) -> None:
        if not Path(RSPAMD).exists():
            raise RuntimeError(f"{RSPAMD} missing: run bench/packages.sh as root")
        self.root = root
        self.socket = socket
        (root / "db").mkdir(parents=True)
        (root / "offenders.map").write_text("".join(f"{a}\n" for a in offenders))
        (root / "init.lua").write_text('require "global_functions" ()\n')
        (root / "rspamd.conf").write_text(RSPAMD_CONF.format(root=root, socket=socket))
        for path in (root, root / "db"):
            shutil.chown(path, "_rspamd", "_rspamd")
        self.proc = subprocess.Popen(
            [RSPAMD, "-f", "-c", str(root / "rspamd.conf"), "-u", "_rspamd", "-g", "_rspamd"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180  # it compiles the TLD list at start: ~15 s
        while not socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (root / "rspamd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rspamd did not start: {log}")
            time.sleep(0.1)
        time.sleep(2)  # the proxy loads its (empty) hyperscan database after binding

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class BareRelay:
    """``python bench/smtp_peers.py relay`` as a subprocess."""

    def __init__(self, listen_port: int, next_port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "relay", str(listen_port), str(next_port)],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", listen_port, timeout=5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the bare relay did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def serve_relay(listen_port: int, next_port: int) -> None:  # pragma: no cover - a subprocess
    from aiosmtpd.controller import Controller

    # Connections to the next hop are shared by the worker threads, taken from and given back
    # to one idle list (last in, first out), so there are never more of them than messages in
    # flight. A connection per thread (as before) grew with the thread pool past the
    # re-injection smtpd's maxproc (10, plugins/postfix/master.cf.after-queue): every smtpd
    # process then sat on some thread's idle connection, and the next thread's new connection
    # waited in the listen queue for a greeting until smtplib's 120 s timeout (the 16-connection
    # stall). guardmail's NextHop keeps its connections the same way.
    idle: list[smtplib.SMTP] = []
    guard = threading.Lock()

    def relay(sender: str, rcpts: list[str], data: bytes) -> None:
        for attempt in range(2):
            with guard:
                client = idle.pop() if idle else None
            if client is None:
                client = smtplib.SMTP("127.0.0.1", next_port, timeout=120)
                client.ehlo("relay.bench.example")
            try:
                client.sendmail(sender, rcpts, data)
            except smtplib.SMTPServerDisconnected:
                if attempt:
                    raise
                continue
            except smtplib.SMTPResponseException:
                with guard:  # a refusal: smtplib has sent RSET, the connection is fine
                    idle.append(client)
                raise
            except BaseException:
                client.close()
                raise
            with guard:
                idle.append(client)
            return

    pool = ThreadPoolExecutor(max_workers=32)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(
                    pool, relay, envelope.mail_from, envelope.rcpt_tos, envelope.original_content
                )
            except smtplib.SMTPResponseException as exc:
                error = exc.smtp_error
                text = error.decode(errors="replace") if isinstance(error, bytes) else error
                return f"{exc.smtp_code} {text}"
            except (OSError, smtplib.SMTPException) as exc:
                return f"451 4.4.1 next hop: {exc}"
            return "250 2.0.0 Ok: relayed"

    controller = Controller(
        Handler(), hostname="127.0.0.1", port=listen_port, data_size_limit=0, decode_data=False
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["relay"]:
        serve_relay(int(sys.argv[2]), int(sys.argv[3]))
