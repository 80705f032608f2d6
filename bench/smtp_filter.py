"""Mail through one private Postfix, side by side: plain, rspamd's milter, guardmail's milter,
guardmail after-queue, and a bare aiosmtpd relay after-queue (issue 27).

Each round starts a fresh Postfix (shared/recipes/postfix.md) and its filter:

- plain: smtplib -> Postfix -> Maildir (the floor).
- rspamd: Postfix with rspamd's proxy worker as ``smtpd_milters`` on a Unix socket, ``multimap``
  over the 10,000 offender addresses as a ``from`` map, action reject (bench/smtp_peers.py).
- milter: Postfix with guardmail as ``smtpd_milters`` on a Unix socket (``milter-tcp``, only
  with ``--only``: on loopback TCP).
- after: Postfix -> guardmail (content_filter) -> Postfix.
- bare: Postfix -> a bare aiosmtpd relay (content_filter) -> Postfix: the after-queue floor.

The same mail in every round: 1,000 tenants with 10 offenders each (guardmail's ``tenants.d``,
rspamd's map), 10% of messages (``--offenders``) from an offender to its tenant's recipient
(guardmail quarantines it into quarantine@example.test, rspamd refuses it with 554), 45% clean
to tenants' recipients, 45% to unprotected ones; 3 KB messages, then a size mix (50% 3 KB, 25%
12 KB, 15% 48 KB, 8% 200 KB, 2% 1 MB), at 1, 4 and 16 client connections, each reused.

Per run: handled msg/s (delivered into a Maildir or refused to the client, until the last one),
p50/p99 latency per message (from the client's MAIL to the Maildir file's mtime, or to the
refusal), the filter's CPU per message (its process tree's CPU time / messages) and its resident
memory (PSS of its process tree after the run). Then the ratios against issue 27's targets.
Needs root, Postfix (scripts/system-packages.sh) and rspamd (bench/packages.sh). Asserts nothing.

    python bench/smtp_filter.py            # 2,000 3 KB / 1,000 mixed messages a run, 1,000 tenants
    python bench/smtp_filter.py --quick    # 200 / 100 messages, 100 tenants
    python bench/smtp_filter.py --base /tmp/base --only rspamd,milter --kinds "3 KB"

``--base TREE`` runs each guardmail round twice, first with the guardmail of another checkout
(e.g. ``git archive main | tar -x -C /tmp/base``) as ``NAME-base``, then with this one, and
prints this tree's figures as ratios of the base's: a change measured against its baseline in
one run, on the same machine load. ``--kinds`` picks the message kinds (3 KB, mix).
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from smtp_peers import BareRelay, Rspamd, tree_cpu, tree_rss_mb  # noqa: E402

from tests.servers.ports import free_ports  # noqa: E402
from tests.servers.postfix import Guardmail, Postfix, start_postfix  # noqa: E402

USERS = ["user@example.test", "other@example.test", "quarantine@example.test", "all@customer.test"]
OFFENDERS_EACH = 10
LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
MIX = [(50, 3_000), (25, 12_000), (15, 48_000), (8, 200_000), (2, 1_000_000)]
MIX_TABLE = [size for share, size in MIX for _ in range(share)]
KINDS = ("3 KB", "mix")
GUARDMAIL_ROUNDS = ("milter", "milter-tcp", "after")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    messages: int  # 3 KB runs
    mixed: int  # size-mix runs
    tenants: int


FULL = Sizes(messages=2000, mixed=1000, tenants=1000)
QUICK = Sizes(messages=200, mixed=100, tenants=100)


@dataclass(slots=True)
class Run:
    name: str
    kind: str
    connections: int
    messages: int
    seconds: float
    latencies: list[float]
    cpu: float  # seconds, the filter's tree
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def offender(tenant: int, k: int) -> str:
    return f"ex{tenant}-{k}@bad.example"


OFFENDER_PERCENT = [10]  # --offenders: the share of offender mail, in percent (0: clean only)


def message(i: int, tenants: int, size: int, tag: str) -> tuple[str, str, bytes]:
    """(sender, recipient, bytes) of message ``i`` (see the module docstring for the mix)."""
    percent = OFFENDER_PERCENT[0]
    if percent and (i * percent) % 100 < percent:  # 10%: every tenth message
        t = (i // 10) % tenants
        sender, rcpt = offender(t, (i // 10) % OFFENDERS_EACH), f"c{t}@customer.test"
    elif i % 2:
        sender, rcpt = f"friend{i % 50}@ok.example", f"c{i % tenants}@customer.test"
    else:
        sender, rcpt = f"friend{i % 50}@ok.example", USERS[(i // 2) % 2]
    head = (
        f"X-Bench-Id: {tag}-{i}\r\nFrom: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: message {i}\r\n"
        f"Message-ID: <bench-{tag}-{i}@bench.example>\r\n\r\n"
    ).encode()
    return sender, rcpt, head + LINE * max(1, (size - len(head)) // len(LINE))


def maildirs(postfix: Postfix) -> list[Path]:
    return [postfix.maildir(u) / "new" for u in USERS]


def delivered(postfix: Postfix) -> int:
    return sum(len(os.listdir(d)) if d.is_dir() else 0 for d in maildirs(postfix))


def delivery_times(postfix: Postfix, tag: str) -> dict[int, float]:
    """Message number -> mtime of its Maildir file, for the messages of run ``tag``."""
    marker = f"X-Bench-Id: {tag}-".encode()
    found: dict[int, float] = {}
    for d in maildirs(postfix):
        if not d.is_dir():
            continue
        for entry in os.scandir(d):
            with open(entry.path, "rb") as f:
                head = f.read(8192)
            at = head.find(marker)
            if at >= 0:
                end = head.index(b"\r\n" if b"\r\n" in head[at:] else b"\n", at)
                found[int(head[at + len(marker) : end])] = entry.stat().st_mtime
    return found


def blast(
    postfix: Postfix, count: int, connections: int, tenants: int, mixed: bool, tag: str
) -> tuple[float, list[float]]:
    """Send ``count`` messages; (seconds until each was delivered or refused, latencies)."""
    before = delivered(postfix)
    started: dict[int, float] = {}
    refused: dict[int, float] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=300) as s:
                s.ehlo("client.example.org")
                for i in range(k, count, connections):
                    size = MIX_TABLE[(i * 37) % len(MIX_TABLE)] if mixed else 3_000
                    sender, rcpt, raw = message(i, tenants, size, tag)
                    started[i] = time.time()
                    try:
                        s.sendmail(sender, [rcpt], raw)
                    except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused) as exc:
                        code = getattr(exc, "smtp_code", 550)
                        if not 500 <= code < 600:
                            raise
                        refused[i] = time.time()
                        s.rset()
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
    deadline = time.monotonic() + 900
    while delivered(postfix) - before + len(refused) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{delivered(postfix) - before} of {count} delivered")
        time.sleep(0.02)
    took = time.monotonic() - began
    done = {**delivery_times(postfix, tag), **refused}
    latencies = [max(0.0, done[i] - started[i]) for i in started if i in done]
    return took, latencies


def start_guardmail(
    root: Path, postfix: Postfix, tenants: int, milter: str | None, tree: Path | None = None
) -> Guardmail:
    tenants_dir = root / "tenants.d"
    tenants_dir.mkdir()
    for n in range(tenants):
        addresses = ", ".join(offender(n, k) for k in range(OFFENDERS_EACH))
        (tenants_dir / f"t{n:05d}.yaml").write_text(
            f"name: t{n:05d}\nrecipients: [c{n}@customer.test]\n"
            f"offenders:\n  - {{name: Ex {n}, addresses: [{addresses}]}}\n"
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
        listen = f"    mode: milter\n    listen: {milter}\n"
    config.write_text(
        f"state_dir: {root}/var\nlog_level: warning\nsources:\n  smtp_filter:\n{listen}"
        f"    tenants_dir: {tenants_dir}\n"
    )
    (root / "guardmail.log").write_text("")
    guardmail = Guardmail(config, root / "guardmail.log", tree=tree)
    deadline = time.monotonic() + 180
    where: int | str = postfix.filter_port
    if milter is not None:
        where = milter if milter.startswith("unix:") else int(milter.rpartition(":")[2])
    while not _listening(where):
        if guardmail.proc.poll() is not None or time.monotonic() > deadline:
            guardmail.stop()
            raise RuntimeError(f"guardmail did not start: {guardmail.log_text()}")
        time.sleep(0.05)
    return guardmail


def _listening(where: int | str) -> bool:
    try:
        if isinstance(where, str):  # unix:/PATH
            # Postfix's smtpd (user postfix) may connect only once the daemon has given the
            # socket to group postfix, just after binding it: root could connect before.
            if os.stat(where[5:]).st_gid != grp.getgrnam("postfix").gr_gid:
                return False
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(where[5:])
                return True
        with socket.create_connection(("127.0.0.1", where), timeout=1):
            return True
    except OSError:
        return False


class Stoppable:
    def __init__(self, pid: int, stop: Callable[[], object]) -> None:
        self.pid = pid
        self.stop = stop


def customers_map(root: Path, tenants: int) -> str:
    """main.cf lines: every tenant's recipient delivered into one Maildir (all@customer.test)."""
    path = root / "customers"
    path.write_text("".join(f"c{n}@customer.test customer.test/all/\n" for n in range(tenants)))
    return f"virtual_mailbox_maps = texthash:{root}/postfix/etc/vmailbox, texthash:{path}\n"


def run_round(
    label: str,
    sizes: Sizes,
    conns: tuple[int, ...],
    runs: list[Run],
    kinds: tuple[str, ...] = KINDS,
    base: Path | None = None,
) -> None:
    """One round: ``label`` is a filter's name, ``-base`` appended for the ``base`` tree's."""
    name = label.removesuffix("-base")
    tree = base if label.endswith("-base") else None
    root = Path(tempfile.mkdtemp(prefix="gm-bench-"))
    root.chmod(0o755)
    postfix: Postfix | None = None
    flt: Stoppable | None = None
    try:
        extra = customers_map(root, sizes.tenants)
        pf_root = root / "postfix"
        pf_root.mkdir()
        sock = pf_root / "milter.sock"
        mode = {"plain": "plain", "rspamd": "milter", "milter": "milter"}.get(name, "after")
        milter = f"unix:{sock}"
        if name == "milter-tcp":
            (port,) = free_ports(1)
            mode, milter = "milter", f"inet:127.0.0.1:{port}"
        postfix = start_postfix(
            mode,
            USERS,
            root=pf_root,
            milter=milter if mode == "milter" else None,
            main_cf=extra,
        )
        if name == "rspamd":
            offenders = [offender(n, k) for n in range(sizes.tenants) for k in range(10)]
            r = Rspamd(root / "rspamd", sock, offenders)
            flt = Stoppable(r.proc.pid, r.stop)
        elif name in ("milter", "milter-tcp", "after"):
            listen = {"milter": milter, "milter-tcp": milter.removeprefix("inet:")}.get(name)
            g = start_guardmail(root, postfix, sizes.tenants, listen, tree)
            flt = Stoppable(g.proc.pid, g.stop)
        elif name == "bare":
            b = BareRelay(postfix.filter_port, postfix.reinject_port)
            flt = Stoppable(b.proc.pid, b.stop)
        blast(postfix, 20, 1, sizes.tenants, False, "warm")
        counts = {"3 KB": sizes.messages, "mix": sizes.mixed}
        for kind in kinds:
            count = counts[kind]
            for c in conns:
                cpu = tree_cpu(flt.pid) if flt else 0.0
                tag = f"{kind[0]}{c}"
                took, lat = blast(postfix, count, c, sizes.tenants, kind == "mix", tag)
                used = tree_cpu(flt.pid) - cpu if flt else 0.0
                rss = tree_rss_mb(flt.pid) if flt else 0.0
                run = Run(label, kind, c, count, took, lat, used, rss)
                runs.append(run)
                print(
                    f"{label:11} {kind:5} {c:2} conn {count:5} msgs {took:7.2f} s "
                    f"{run.rate:6.0f} msg/s  p50 {run.pct(0.5):7.1f} ms"
                    f"  p99 {run.pct(0.99):7.1f} ms"
                    f"  CPU {used / count * 1000:6.2f} ms/msg  RSS {rss:6.1f} MB",
                    flush=True,
                )
    except Exception:
        for log in (root / "guardmail.log", root / "postfix" / "log" / "maillog"):
            if log.is_file():  # why a round failed, before its directory goes
                print(f"--- {log} (last lines)", *log.read_text().splitlines()[-15:], sep="\n")
        raise
    finally:
        if flt:
            flt.stop()
        if postfix:
            postfix.stop()
        shutil.rmtree(root, ignore_errors=True)


def ratios(runs: list[Run]) -> None:
    by = {(r.name, r.kind, r.connections): r for r in runs}
    print("\nTargets (issue 27): milter >= rspamd msg/s, p99 <= rspamd's, memory < 0.5x rspamd's;")
    print("after-queue >= 0.9x the bare relay's msg/s.")
    for kind in ("3 KB", "mix"):
        for c in sorted({r.connections for r in runs}):
            m, r = by.get(("milter", kind, c)), by.get(("rspamd", kind, c))
            a, b = by.get(("after", kind, c)), by.get(("bare", kind, c))
            parts = [f"{kind:5} {c:2} conn:"]
            if m and r:
                parts.append(
                    f"milter/rspamd msg/s {m.rate / r.rate:4.2f} {ok(m.rate >= r.rate)}, "
                    f"p99 {m.pct(0.99) / r.pct(0.99):4.2f} {ok(m.pct(0.99) <= r.pct(0.99))}, "
                    f"memory {m.rss_mb / r.rss_mb:4.2f} {ok(m.rss_mb < r.rss_mb / 2)}"
                )
            if a and b:
                parts.append(
                    f"after/bare msg/s {a.rate / b.rate:4.2f} {ok(a.rate >= 0.9 * b.rate)}"
                )
            if len(parts) > 1:
                print("  ".join(parts))
    bases = sorted({r.name.removesuffix("-base") for r in runs if r.name.endswith("-base")})
    if bases:
        print("\nThis tree / the base tree (msg/s: higher is better; p99, CPU, memory: lower):")
    for name in bases:
        for (n, kind, c), base in by.items():
            mine = by.get((name, kind, c))
            if n != f"{name}-base" or mine is None:
                continue
            print(
                f"{name:10} {kind:5} {c:2} conn: msg/s {mine.rate / base.rate:4.2f}, "
                f"p99 {mine.pct(0.99) / base.pct(0.99):4.2f}, "
                f"CPU/msg {mine.cpu / max(base.cpu, 1e-9):4.2f}, "
                f"memory {mine.rss_mb:.0f} / {base.rss_mb:.0f} MB"
            )


def ok(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI")
    parser.add_argument("--connections", default="1,4,16", help="client connections, e.g. 1,4")
    parser.add_argument(
        "--only",
        default="plain,rspamd,milter,after,bare",
        help="rounds, of plain,rspamd,milter,milter-tcp,after,bare",
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="message kinds: 3 KB,mix")
    parser.add_argument(
        "--offenders",
        type=int,
        default=10,
        choices=range(101),
        metavar="PERCENT",
        help="share of mail from offenders (0: clean mail only, to split the gap)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        help="another checkout: its guardmail runs each guardmail round too, just before",
    )
    args = parser.parse_args()
    OFFENDER_PERCENT[0] = args.offenders
    sizes = QUICK if args.quick else FULL
    conns = tuple(int(c) for c in args.connections.split(","))
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    if args.base is not None and not (args.base / "guardmail" / "__init__.py").is_file():
        parser.error(f"--base {args.base}: no guardmail package there")
    print(
        f"{sizes.messages} messages of 3 KB and {sizes.mixed} of the size mix a run, "
        f"{sizes.tenants} tenants x {OFFENDERS_EACH} offenders, {args.offenders}% offender "
        f"mail, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs: list[Run] = []
    for name in args.only.split(","):
        if args.base is not None and name in GUARDMAIL_ROUNDS:
            run_round(f"{name}-base", sizes, conns, runs, kinds, args.base.resolve())
        run_round(name, sizes, conns, runs, kinds)
    ratios(runs)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
