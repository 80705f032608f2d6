"""A private Postfix in a temporary directory, as in shared/recipes/postfix.md, and guardmail as
its content filter.

Postfix runs as root with its own config directory (``postfix -c DIR``), touching nothing of the
system's. Modes: ``plain`` (smtpd N delivers to Maildirs), ``after`` (N -> content_filter on the
filter port A -> re-injection smtpd B -> Maildirs) and ``before`` (N with smtpd_proxy_filter A ->
B). Retry timers stay at Postfix's defaults (300 s): tests flush with ``postqueue -f``.

``python -m tests.servers.postfix CONFIG`` runs ``guardmail run`` with the SMTP filter wired into
the daemon as plugins/postfix/README.md proposes, for as long as
guardmail/daemon/supervisor.py does not wire it itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.ports import free_ports, wait_for_banner

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "example.test"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-gmtest
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}
myhostname = mx.gmtest.test
mydomain = gmtest.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:5.7.1 test instance does not relay
relay_transport = error:5.7.1 test instance does not relay
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
local_header_rewrite_clients =
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
message_size_limit = 209715200
mailbox_size_limit = 0
virtual_mailbox_limit = 0
"""

MILTER_CF = """\
smtpd_milters = {milter}
non_smtpd_milters = {milter}
milter_default_action = tempfail
milter_protocol = 6
"""

MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "postfix"


def services(mode: str, n: int, a: int, b: int) -> tuple[str, str]:
    """(public smtpd and filter transport, re-injection smtpd) for master.cf.

    For ``after`` and ``before``: plugins/postfix/master.cf.MODE-queue exactly as shipped, but
    with the test's ports (N for the public ``smtp`` service, A for 10025, B for 10026) and no
    chroot (a private instance has no jail to run in).
    """
    if mode in ("plain", "milter"):
        return f"127.0.0.1:{n} inet n - n - - smtpd\n", ""
    text = (PLUGIN / f"master.cf.{mode}-queue").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    wired = "\n".join(lines).replace(":10025", f":{a}").replace("127.0.0.1:10026", f"127.0.0.1:{b}")
    wired = re.sub(r"^smtp\s+inet\s+n\s+-\s+y", f"127.0.0.1:{n} inet n - n", wired, flags=re.M)
    cut = wired.index(f"127.0.0.1:{b} inet")
    return wired[:cut], wired[cut:] + "\n"


@dataclass
class Postfix:
    root: Path
    mode: str
    port: int  # N: where clients send
    filter_port: int  # A: where Postfix hands mail to the filter
    reinject_port: int  # B: where the filter re-injects
    users: list[str] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.root / "mail" / domain / local

    def delivered(self, address: str) -> list[bytes]:
        """The files in the Maildir's new/, oldest first."""
        new = self.maildir(address) / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def send(
        self,
        recipients: Sequence[str],
        raw: bytes,
        *,
        sender: str = "sender@example.org",
        mail_options: Sequence[str] = (),
        port: int | None = None,
    ) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port or self.port, timeout=120) as s:
            s.ehlo("client.example.org")
            return s.sendmail(sender, list(recipients), raw, mail_options=list(mail_options))

    def queue(self) -> list[dict[str, object]]:
        """``postqueue -j``: one dict per queued message."""
        out = self.postfix_cmd("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        self.postfix_cmd("postqueue", "-f")

    def log(self) -> str:
        path = self.root / "log" / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def postfix_cmd(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, "-c", str(self.etc), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def set_reinjection(self, enabled: bool) -> None:
        """Take the re-injection smtpd B away (its port closes) or bring it back."""
        master = self.etc / "master.cf"
        text = master.read_text()
        _, block = services(self.mode, self.port, self.filter_port, self.reinject_port)
        text = text.replace(block, "")
        master.write_text(text + block if enabled else text)
        _backdate(master)
        self.postfix_cmd(POSTFIX, "reload")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _listening(self.reinject_port) == enabled:
                return
            time.sleep(0.05)
        raise AssertionError(f"re-injection port {self.reinject_port} still {not enabled}")

    def stop(self) -> None:
        pid_file = self.root / "spool" / "pid" / "master.pid"
        pids: list[int] = []
        if pid_file.exists():
            master = int(pid_file.read_text().strip())
            children = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True
            ).stdout.split()
            pids = [master, *map(int, children)]
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postfix(
    mode: str,
    users: Sequence[str],
    *,
    filter_port: int | None = None,
    root: Path | None = None,
    milter: str | None = None,
    main_cf: str = "",
) -> Postfix:
    """A private Postfix on loopback delivering ``users`` (full addresses) into Maildirs.

    ``milter`` (mode ``milter``): Postfix's name of the milter socket (``unix:/PATH`` or
    ``inet:HOST:PORT``), set as ``smtpd_milters`` and ``non_smtpd_milters`` with
    ``milter_default_action = tempfail``, as plugins/postfix/README.md says. ``main_cf``: more
    main.cf lines (short retry timers, ...).
    """
    if not Path(POSTFIX).exists():
        raise AssertionError(f"{POSTFIX} missing: run scripts/system-packages.sh as root")
    root = root or Path(tempfile.mkdtemp(prefix="gm-pf-"))
    root.mkdir(exist_ok=True)
    root.chmod(0o755)  # postfix (master.lock) and nobody (Maildirs) must traverse it
    for sub in ("etc", "mail", "log", "spool"):
        (root / sub).mkdir(exist_ok=True)
    shutil.chown(root / "mail", "nobody", "nogroup")
    n, a, b = free_ports(3)
    a = filter_port or a
    domains = sorted({u.partition("@")[2] for u in users})
    lines = MAIN_CF.format(root=root, domains=", ".join(domains))
    if milter is not None:
        lines += MILTER_CF.format(milter=milter)
    (root / "etc" / "main.cf").write_text(lines + main_cf)
    (root / "etc" / "vmailbox").write_text(
        "".join(f"{u}  {u.partition('@')[2]}/{u.partition('@')[0]}/\n" for u in users)
    )
    public, reinject = services(mode, n, a, b)
    (root / "etc" / "master.cf").write_text(MASTER_CF + public + reinject)
    for name in ("main.cf", "master.cf", "vmailbox"):
        _backdate(root / "etc" / name)
    server = Postfix(
        root=root, mode=mode, port=n, filter_port=a, reinject_port=b, users=list(users)
    )
    done = subprocess.run(
        [POSTFIX, "-c", str(root / "etc"), "start"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        log = server.log()
        server.stop()
        raise AssertionError(f"postfix start failed: {done.stderr}{log[-2000:]}")
    wait_for_banner(n)
    return server


def _backdate(path: Path) -> None:
    # A main.cf younger than ~2 s makes every Postfix command wait for it to settle.
    old = time.time() - 60
    os.utime(path, (old, old))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def strip_added_headers(delivered: bytes) -> tuple[list[bytes], bytes]:
    """Split a Maildir file into the header fields Postfix added and the rest.

    Added: Return-Path, X-Original-To, Delivered-To, and the Received headers Postfix wrote
    (``by mx.gmtest.test (Postfix)``), each with its continuation lines.
    """
    added: list[bytes] = []
    rest = delivered
    pattern = re.compile(
        rb"(?:Return-Path|X-Original-To|Delivered-To): [^\n]*\n"
        rb"|Received: [^\n]*(?:\n[ \t][^\n]*)*\n"
    )
    while True:
        m = pattern.match(rest)
        if m is None or (
            m.group().startswith(b"Received") and b"by mx.gmtest.test (Postfix)" not in m.group()
        ):
            return added, rest
        added.append(m.group())
        rest = rest[m.end() :]


@dataclass
class Guardmail:
    """``guardmail run`` as a subprocess, its log (stderr) in a file."""

    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (a fault)
    tree: Path | None = None  # another checkout's guardmail (a bench's baseline); else this one
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.log.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "guardmail", "-c", str(self.config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # `-m` puts the working directory first on sys.path: its guardmail runs.
                cwd=self.tree or Path(__file__).resolve().parents[2],
                env={**os.environ, **self.env},
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "smtp_filter.listening" in self.log_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"guardmail exited {self.proc.returncode}: {self.log_text()}")
            time.sleep(0.02)
        raise AssertionError(f"guardmail did not listen: {self.log_text()}")

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise
