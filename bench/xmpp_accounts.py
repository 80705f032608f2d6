"""Memory of the real daemon watching many XMPP accounts (issue 28: <= 150 KB per account at 500).

For each N (0 first, the baseline): a fresh ``guardmail run`` watching N accounts of a private
Prosody on loopback (STARTTLS, SCRAM-SHA-1, 10,000 iterations); once every account has logged
``xmpp.caught_up`` and 2 s + 1 s per 250 accounts have passed, the daemon's VmRSS (and PSS from
/proc/PID/smaps_rollup) is read; KB per account is the difference from N=0, over N.

    python bench/xmpp_accounts.py                      # N = 50, 200, 500
    python bench/xmpp_accounts.py --accounts 50 200    # other sizes
    python bench/xmpp_accounts.py --base /tmp/base     # also a baseline checkout, side by side

With ``--base TREE`` (a checkout of the baseline, e.g. ``git worktree add --detach /tmp/base
main``) each size is measured for the baseline and then for this tree, one after the other on
the same Prosody, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from imap_procs import ROOT, Guardmail, memory  # also puts the repository on sys.path

from tests.servers.prosody import DOMAIN, Prosody, start_prosody


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def write_config(directory: Path, server: Prosody, users: list[str]) -> Path:
    secrets = directory / "secrets"
    secrets.mkdir(mode=0o700)
    lines = [
        f"state_dir: {directory / 'var'}",
        "offenders:",
        "  - name: Bench Offender",
        f"    jids: [stalker@{DOMAIN}]",
    ]
    if users:
        lines += ["sources:", "  xmpp:"]
    for user in users:
        pw = secrets / user
        pw.write_text(server.users[user] + "\n")
        pw.chmod(0o600)
        lines += [
            f"    - name: {user}",
            f"      jid: {user}@{DOMAIN}",
            "      host: 127.0.0.1",
            f"      port: {server.port}",
            f"      ca_file: {server.ca_file}",
            f"      password_file: {pw}",
        ]
    config = directory / "guardmail.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def measure(server: Prosody, tmp: Path, count: int, tree: Path) -> tuple[int, int, float]:
    """VmRSS KiB, PSS KiB and seconds to connect, for a daemon of ``tree`` watching ``count``
    accounts."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"n{count}-", dir=tmp))
    users = sorted(server.users)[:count]
    config = write_config(run_dir, server, users)
    daemon = Guardmail(config, run_dir / "guardmail.log", tree=tree)
    try:
        daemon.wait_for(
            lambda: bool(daemon.events("daemon.started")), timeout=120, what="daemon.started"
        )
        took = daemon.wait_for(
            lambda: (
                len({e.fields.get("account") for e in daemon.events("xmpp.caught_up")}) >= count
            ),
            timeout=120 + count,
            what=f"{count} accounts caught up",
        )
        time.sleep(2 + count / 250)
        rss, pss = memory(daemon.pid).rss_kib, pss_kib(daemon.pid)
    finally:
        daemon.stop(timeout=60)
    return rss, pss, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--base", type=Path, help="a baseline checkout to measure beside this one")
    args = parser.parse_args()
    sizes: list[int] = args.accounts
    trees: list[tuple[str, Path]] = [("this", ROOT)]
    if args.base is not None:
        trees.insert(0, ("base", args.base.resolve()))
    users = {f"user{i}": f"pw-{i}" for i in range(max(sizes))}
    print(f"python {sys.version.split()[0]}; " + "; ".join(f"{k} {t}" for k, t in trees))
    server = start_prosody(users, log_level="warn")
    try:
        with tempfile.TemporaryDirectory(prefix="gm-xa-") as tmp:
            print(
                f"{'tree':>5} {'accounts':>8} {'connected s':>11} {'VmRSS MiB':>9} {'PSS MiB':>8}"
                f" {'KB/acct RSS':>11} {'KB/acct PSS':>11} {'KB/acct RSS vs previous N':>26}"
            )
            base: dict[str, tuple[int, int]] = {}
            last: dict[str, tuple[int, int]] = {}
            for name, tree in trees:
                rss, pss, _ = measure(server, Path(tmp), 0, tree)
                base[name], last[name] = (rss, pss), (0, rss)
                print(f"{name:>5} {0:>8} {'':>11} {rss / 1024:>9.1f} {pss / 1024:>8.1f}")
            for n in sizes:
                for name, tree in trees:
                    rss, pss, took = measure(server, Path(tmp), n, tree)
                    (base_rss, base_pss), (last_n, last_rss) = base[name], last[name]
                    print(
                        f"{name:>5} {n:>8} {took:>11.1f} {rss / 1024:>9.1f} {pss / 1024:>8.1f}"
                        f" {(rss - base_rss) * 1.024 / n:>11.0f}"
                        f" {(pss - base_pss) * 1.024 / n:>11.0f}"
                        f" {(rss - last_rss) * 1.024 / (n - last_n):>26.0f}",
                        flush=True,
                    )
                    last[name] = (n, rss)
            print(
                "KB = 1000 bytes. The N=0 daemon has not imported slixmpp: the first column"
                " carries that fixed cost, the last one (growth from the previous N) does not."
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
