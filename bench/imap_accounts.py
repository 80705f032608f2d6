"""Part 3 of bench/imap.py: many IMAP accounts watched by one guardmail process.

For each size: a fresh ``guardmail run`` watching that many accounts' INBOX; seconds to start and
to connect them all; VmRSS, VmHWM and threads once all are connected; latency over offender
messages to random accounts (one at a time, never the same account twice in a row); seconds to
stop; warnings in guardmail's and Dovecot's logs. The difference between the two sizes gives
the memory cost of one account.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import imap_mail as mail
import imap_procs as procs
from imap_procs import Dovecot, Guardmail


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountsRow:
    accounts: int
    start_s: float
    connect_s: float
    settled: procs.Memory
    after: procs.Memory
    latencies: list[float]
    missed: int
    stop_s: float
    problems: Counter[str]


def run_accounts(
    server: Dovecot, tmp: Path, users: dict[str, str], count: int, messages: int
) -> AccountsRow:
    names = sorted(users)[:count]
    run_dir = tmp / f"accounts-{count}"
    run_dir.mkdir()
    config = procs.write_guardmail_config(run_dir, server.imap_port, [(u, users[u]) for u in names])
    daemon = Guardmail(config, run_dir / "guardmail.log")
    try:
        daemon.wait_for(
            lambda: (
                len({e.fields.get("account") for e in daemon.events("imap.connected")}) >= count
            ),
            timeout=120 + count * 0.5,
            what=f"{count} accounts connected",
        )
        connect_s = max(e.at for e in daemon.events("imap.connected")) - daemon.started
        start_s = daemon.events("daemon.started")[0].at - daemon.started
        time.sleep(2 + count / 250)  # let every watcher select, catch up and enter IDLE
        settled = procs.memory(daemon.pid)
        rng = random.Random(count)
        latencies: list[float] = []
        missed = 0
        user = ""
        for i in range(messages):
            # Never the same account twice in a row: that is the back-to-back case of part 1.
            user = rng.choice([u for u in names if u != user])
            client = mail.connect(server.imap_port, user, users[user])
            try:
                took = mail.move_latency(
                    client, mail.offender_message(f"acct{count}-{i}"), timeout=mail.MESSAGE_TIMEOUT
                )
            finally:
                mail.logout(client)
            if took is None:
                missed += 1
            else:
                latencies.append(took)
        after = procs.memory(daemon.pid)
    finally:
        stop_s = daemon.stop(timeout=60)
    problems = procs.guardmail_problems(daemon)
    return AccountsRow(
        accounts=count,
        start_s=start_s,
        connect_s=connect_s,
        settled=settled,
        after=after,
        latencies=latencies,
        missed=missed,
        stop_s=stop_s,
        problems=problems,
    )


def part_accounts(sizes: tuple[int, int], m: int, *, raise_inotify: bool) -> None:
    """Both sizes on one Dovecot with raised limits; prints the table."""
    small, big = sizes
    print(f"\n## 3. {small} and {big} accounts (INBOX each) watched by one guardmail process")
    users = {f"acct{i:04d}": f"pw-{i}-{random.Random(i).randrange(10**9)}" for i in range(big)}
    with (
        procs.inotify_instances(big + 64, raise_limit=raise_inotify) as inotify,
        procs.workspace(users, extra_conf=procs.MANY_CONNECTIONS) as (server, tmp, _),
    ):
        print(f"{inotify}; dovecot: {' '.join(procs.MANY_CONNECTIONS.split())}")
        # Quarantine exists beforehand, as it does after an account's first quarantined message:
        # the measuring client's STATUS of a missing folder can make guardmail's first CREATE
        # fail (Dovecot answers ALREADYEXISTS to a CREATE racing a STATUS of that name).
        for user, password in users.items():
            client = mail.connect(server.imap_port, user, password)
            try:
                client.create_folder(mail.QUARANTINE)
            finally:
                mail.logout(client)
        rows = [run_accounts(server, tmp, users, c, m) for c in (small, big)]
        print(
            f"{'accounts':>8} {'started s':>9} {'connected s':>11} {'VmRSS MiB':>9} {'threads':>7}"
            f" | after {m} msgs: {'VmRSS':>5} {'VmHWM':>5} | {'p50 ms':>6} {'p99 ms':>6}"
            f" {'max':>5} {'missed':>6} | {'stop s':>6}"
        )
        for r in rows:
            p50, p99, _, top = mail.summary(r.latencies) if r.latencies else (0.0, 0.0, 0, 0.0)
            print(
                f"{r.accounts:>8} {r.start_s:>9.2f} {r.connect_s:>11.2f}"
                f" {r.settled.rss_kib / 1024:>9.1f} {r.settled.threads:>7} | {'':>15}"
                f"{r.after.rss_kib / 1024:>5.0f} {r.after.hwm_kib / 1024:>5.0f} | {mail.ms(p50):>6}"
                f" {mail.ms(p99):>6} {mail.ms(top):>5} {r.missed:>6} | {r.stop_s:>6.2f}"
            )
        lo, hi = rows
        per = (hi.settled.rss_kib - lo.settled.rss_kib) / (hi.accounts - lo.accounts)
        base = lo.settled.rss_kib - per * lo.accounts
        print(
            f"memory per account (VmRSS at {big} minus at {small}, / {big - small}): {per:.0f} KiB;"
            f" fixed part ~{base / 1024:.0f} MiB. started / connected: from process start to"
            " its daemon.started line / to the last account's imap.connected line; VmRSS"
            " 2 s + 1 s per 250 accounts after that. Latency as in part 1 (STATUS poll every"
            f" {mail.POLL_SECONDS * 1000:.0f} ms), one message at a time to a random account."
        )
        for r in rows:
            print(
                f"guardmail log at {r.accounts} accounts:"
                f" {sum(r.problems.values())} warnings/errors"
            )
            for text, times in r.problems.most_common(5):
                print(f"  {times:>4} x {text}")
        warnings = procs.dovecot_warnings(server)
        print(f"dovecot log: {sum(warnings.values())} warnings/errors")
        for text, times in warnings.most_common(8):
            print(f"  {times:>4} x {text}")
