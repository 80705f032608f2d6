"""Mail through a private Postfix with and without guardmail as its after-queue content filter
or its milter.

Each round starts a fresh Postfix (shared/recipes/postfix.md) and counts messages delivered into
its Maildirs:

1. plain: smtplib -> Postfix -> Maildir (the baseline).
2. guardmail: smtplib -> Postfix -> guardmail (``guardmail run``, after-queue) -> Postfix ->
   Maildir, with many tenant files loaded; all mail clean (to unprotected recipients), then
   with 10% from an offender to protected recipients (archived with fsync, quarantined).
3. milter: smtplib -> Postfix with guardmail as ``smtpd_milters`` on a Unix socket (and, with
   ``--milter-tcp``, on loopback TCP) -> Maildir, the same tenants and mail.

at 1 and 4 (``--connections``) client connections (each reused for its messages, ~3 KB
messages), then one large message end to end. Prints delivered msg/s and guardmail's CPU per
message; asserts nothing about time. Needs root and Postfix (scripts/system-packages.sh).

    python bench/smtp_filter.py            # 2,000 messages a run, 1,000 tenants, 50 MB
    python bench/smtp_filter.py --quick    # 200 messages a run, 100 tenants, 10 MB
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.postfix import Guardmail, Postfix, start_postfix  # noqa: E402

PROTECTED = ["alice@example.test", "bob@example.test"]
USERS = ["user@example.test", "other@example.test", *PROTECTED, "quarantine@example.test"]
BODY = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n" * 36


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    messages: int
    tenants: int
    large: int


FULL = Sizes(messages=2000, tenants=1000, large=50_000_000)
QUICK = Sizes(messages=200, tenants=100, large=10_000_000)


def message(i: int, *, offender: bool) -> tuple[str, list[str], bytes]:
    sender = "stalker@bad.example" if offender else f"friend{i % 50}@ok.example"
    rcpts = [PROTECTED[i % 2]] if offender else [USERS[i % 2]]
    raw = (
        f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: message {i}\r\n"
        f"Message-ID: <bench-{i}-{time.time_ns()}@bench.example>\r\n\r\n{BODY}"
    ).encode()
    return sender, rcpts, raw


def delivered(postfix: Postfix) -> int:
    total = 0
    for user in USERS:
        new = postfix.maildir(user) / "new"
        total += len(os.listdir(new)) if new.is_dir() else 0
    return total


def blast(postfix: Postfix, count: int, connections: int, offender_every: int) -> float:
    """Send ``count`` messages over ``connections`` reused connections; seconds until delivered."""
    before = delivered(postfix)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=120) as s:
                s.ehlo("client.example.org")
                for i in range(k, count, connections):
                    offender = offender_every > 0 and i % offender_every == 0
                    sender, rcpts, raw = message(i, offender=offender)
                    s.sendmail(sender, rcpts, raw)
        except BaseException as exc:  # reported below, after the other threads finish
            errors.append(exc)

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    deadline = time.monotonic() + 600
    while delivered(postfix) - before < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{delivered(postfix) - before} of {count} delivered")
        time.sleep(0.01)
    return time.monotonic() - began


def large(postfix: Postfix, size: int) -> float:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n"
    raw = b"From: friend@ok.example\r\nSubject: large\r\n\r\n" + line * (size // len(line))
    before = delivered(postfix)
    began = time.monotonic()
    postfix.send(["user@example.test"], raw, sender="friend@ok.example")
    while delivered(postfix) == before:
        time.sleep(0.01)
    return time.monotonic() - began


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def start_guardmail(
    root: Path, postfix: Postfix, tenants: int, milter: str | None = None
) -> Guardmail:
    tenants_dir = root / "tenants.d"
    tenants_dir.mkdir()
    for n in range(tenants):
        (tenants_dir / f"t{n:05d}.yaml").write_text(
            f"name: t{n:05d}\nrecipients: [c{n}@customer{n % 97}.example]\n"
            f"offenders:\n  - {{name: Ex {n}, addresses: [ex{n}@bad.example]}}\n"
        )
    for n, address in enumerate(PROTECTED):
        (tenants_dir / f"protected{n}.yaml").write_text(
            f"name: protected{n}\nrecipients: [{address}]\n"
            "offenders:\n  - {name: Stalker, addresses: [stalker@bad.example]}\n"
            "quarantine_mailbox: quarantine@example.test\n"
        )
    config = root / "guardmail.yaml"
    if milter is None:
        listen = (
            f"    listen: 127.0.0.1:{postfix.filter_port}\n"
            f"    next_hop: 127.0.0.1:{postfix.reinject_port}\n"
        )
    elif milter.startswith("unix:"):
        listen = f"    mode: milter\n    listen: {milter}\n    socket_group: postfix\n"
    else:
        listen = f"    mode: milter\n    listen: 127.0.0.1:{postfix.filter_port}\n"
    config.write_text(
        f"state_dir: {root}/var\nlog_level: warning\nsources:\n  smtp_filter:\n{listen}"
        f"    tenants_dir: {tenants_dir}\n"
    )
    (root / "guardmail.log").write_text("")
    guardmail = Guardmail(config, root / "guardmail.log")
    deadline = time.monotonic() + 120
    while not _listening(milter if milter and milter.startswith("unix:") else postfix.filter_port):
        if guardmail.proc.poll() is not None or time.monotonic() > deadline:
            guardmail.stop()
            raise RuntimeError(f"guardmail did not start: {guardmail.log_text()}")
        time.sleep(0.02)
    return guardmail


def _listening(where: int | str) -> bool:
    import socket

    try:
        if isinstance(where, str):  # unix:/PATH
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(where[5:])
                return True
        with socket.create_connection(("127.0.0.1", where), timeout=1):
            return True
    except OSError:
        return False


def run_round(
    name: str,
    sizes: Sizes,
    make: Callable[[Path], tuple[Postfix, Guardmail | None]],
    connections_list: tuple[int, ...] = (1, 4),
) -> None:
    root = Path(tempfile.mkdtemp(prefix="gm-bench-"))
    root.chmod(0o755)
    try:
        postfix, guardmail = make(root)
        try:
            blast(postfix, 20, 1, 0)  # warm up: first connections, first Maildir files
            for connections in connections_list:
                for offender_every in (0, 10) if guardmail else (0,):
                    cpu = cpu_seconds(guardmail.proc.pid) if guardmail else 0.0
                    took = blast(postfix, sizes.messages, connections, offender_every)
                    used = cpu_seconds(guardmail.proc.pid) - cpu if guardmail else 0.0
                    kind = "10% offender" if offender_every else "clean"
                    extra = (
                        f"  guardmail CPU {used / sizes.messages * 1000:.2f} ms/msg"
                        if guardmail
                        else ""
                    )
                    print(
                        f"{name:10} {connections} conn  {kind:12} {sizes.messages:5} msgs "
                        f"{took:6.2f} s  {sizes.messages / took:7.0f} msg/s{extra}",
                        flush=True,
                    )
            took = large(postfix, sizes.large)
            memory = ""
            if guardmail:
                rss, hwm = rss_mb(guardmail.proc.pid)
                memory = f"  guardmail RSS {rss:.0f} MB, peak {hwm:.0f} MB"
            print(f"{name:10} one {sizes.large / 1e6:.0f} MB message {took:6.2f} s{memory}")
        finally:
            if guardmail:
                guardmail.stop()
            postfix.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument(
        "--connections", default="1,4", help="client connections per run, e.g. 1,4,16"
    )
    parser.add_argument("--milter-tcp", action="store_true", help="also the milter on TCP")
    parser.add_argument(
        "--only", default="plain,after,milter", help="which of plain,after,milter to run"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    conns = tuple(int(c) for c in args.connections.split(","))
    only = set(args.only.split(","))
    print(
        f"{sizes.messages} messages of ~{len(message(0, offender=False)[2])} bytes a run, "
        f"{sizes.tenants} tenants, {os.cpu_count()} CPUs"
    )

    def plain(root: Path) -> tuple[Postfix, Guardmail | None]:
        return start_postfix("plain", USERS, root=root / "postfix"), None

    def after(root: Path) -> tuple[Postfix, Guardmail | None]:
        postfix = start_postfix("after", USERS, root=root / "postfix")
        try:
            return postfix, start_guardmail(root, postfix, sizes.tenants)
        except BaseException:
            postfix.stop()
            raise

    def milter(transport: str) -> Callable[[Path], tuple[Postfix, Guardmail | None]]:
        def make(root: Path) -> tuple[Postfix, Guardmail | None]:
            pf_root = root / "postfix"
            pf_root.mkdir()
            socket = f"unix:{pf_root}/milter.sock"
            postfix = start_postfix("milter", USERS, root=pf_root, milter=socket)
            if transport == "tcp":  # the port Postfix was given, now for the milter
                main_cf = postfix.etc / "main.cf"
                tcp = f"inet:127.0.0.1:{postfix.filter_port}"
                main_cf.write_text(main_cf.read_text().replace(socket, tcp))
                old = time.time() - 60
                os.utime(main_cf, (old, old))
                postfix.postfix_cmd("/usr/sbin/postfix", "reload")
            try:
                named = socket if transport == "unix" else "tcp"
                return postfix, start_guardmail(root, postfix, sizes.tenants, milter=named)
            except BaseException:
                postfix.stop()
                raise

        return make

    if "plain" in only:
        run_round("plain", sizes, plain, conns)
    if "after" in only:
        run_round("after", sizes, after, conns)
    if "milter" in only:
        run_round("milter", sizes, milter("unix"), conns)
        if args.milter_tcp:
            run_round("milter-tcp", sizes, milter("tcp"), conns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
