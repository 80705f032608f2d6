"""The IMAP watcher against a private Dovecot on loopback: latency, first-run scan, many accounts.

1. Latency from APPEND to archived-and-moved, one message at a time, rounds interleaved on one
   Dovecot, each tool on its own account: (a) a bare IDLE client (APPEND to untagged EXISTS: the
   floor, Dovecot batches IDLE notifications ~0.5 s), (b) ``guardmail run``, (c) imapfilter in an
   IDLE loop. (b) and (c) are done when the message is in Quarantine and gone from INBOX. Then
   back-to-back pairs: the second message arrives before the watcher is back in IDLE. With
   ``--other-client``, each account also has a second client that SELECTs INBOX and searches it
   every 20 ms (the person's own mail program), which changes when Dovecot announces new mail.
2. First run over a full INBOX (10% from the offender): guardmail until its ``imap.caught_up``
   line names the last UID (it judges headers in batches of 500 and moves the offenders a chunk
   of up to 500 at a time, one UID MOVE per chunk, each archived first, reading the next
   chunk on a second connection meanwhile); a bare client doing only
   SEARCH + one UID MOVE per offender message (what moving one at a time costs Dovecot);
   imapfilter's ``contain_from`` + ``move_messages``.
3. Many accounts in one guardmail process: time to connect all, VmRSS/VmHWM and threads once all
   are connected, latency over 50 offender messages to random accounts, at two sizes (the
   difference gives the memory cost of one account). Raises ``fs.inotify.max_user_instances``
   for the part and restores it (see ``imap_procs.inotify_instances``).

Prints figures; asserts nothing about time. Needs root (Dovecot's mail belongs to ``dovecot``),
Dovecot and imapfilter (scripts/system-packages.sh).

    python bench/imap.py            # 200 messages, 20,000-message folder, 20 and 500 accounts
    python bench/imap.py --quick    # 10 messages, 500-message folder, 5 and 20 accounts
    python bench/imap.py --part 1 --other-client   # latency beside a polling mail program
"""

from __future__ import annotations

import argparse
import io
import os
import pwd
import random
import resource
import shutil
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imap_accounts
import imap_mail as mail
import imap_procs as procs
from imap_mail import ms
from imap_procs import BenchError, Guardmail, Imapfilter

WARMUP = 3  # messages per tool before the measured ones (first connection, first folder use)
STUCK_SECONDS = 5.0  # ten times the IDLE floor: the watcher waited for something else


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    messages: int
    folder: int
    accounts: tuple[int, int]
    pairs: int
    account_messages: int = 50


FULL = Sizes(messages=200, folder=20_000, accounts=(20, 500), pairs=20)
QUICK = Sizes(messages=10, folder=500, accounts=(5, 20), pairs=3)


# --- 1. latency ---------------------------------------------------------------------------------


def part_latency(sizes: Sizes, *, other_client: bool = False) -> None:
    users = {"floor": "pw-floor", "gm": "pw-gm", "ifl": "pw-ifl"}
    n = sizes.messages
    beside = ", another client SELECTing and searching INBOX every 20 ms" if other_client else ""
    print(f"\n## 1. Latency from APPEND to archived-and-moved ({n} messages per tool{beside})")
    with procs.workspace(users) as (server, tmp, stack):
        clients: dict[str, Any] = {}
        for user in ("gm", "ifl"):
            clients[user] = mail.connect(server.imap_port, user, users[user])
            stack.callback(mail.logout, clients[user])
            clients[user].create_folder(mail.QUARANTINE)
        config = procs.write_guardmail_config(tmp, server.imap_port, [("gm", users["gm"])])
        daemon = Guardmail(config, tmp / "guardmail.log")
        stack.callback(procs.stop_quietly, daemon)
        daemon.wait_for(lambda: bool(daemon.events("imap.connected")), timeout=60, what="guardmail")
        # Let it select, catch up and enter IDLE: mail arriving before that is the back-to-back
        # case below, not the steady state measured here.
        time.sleep(1.5)
        filt = Imapfilter(tmp, server.imap_port, "ifl", users["ifl"], idle=True)
        stack.callback(procs.stop_quietly, filt)
        filt.wait_ready(timeout=60)
        floor = mail.IdleFloor.open(server.imap_port, "floor", users["floor"])
        stack.callback(floor.close)
        if other_client:
            for user, password in users.items():
                stack.callback(mail.OtherClient(server.imap_port, user, password).close)

        tools: list[tuple[str, Callable[[bytes], float | None]]] = [
            ("(a) bare IDLE client: EXISTS (floor)", lambda raw: floor.latency(raw, timeout=10)),
            (
                "(b) guardmail: fsync'd archive + MOVE",
                lambda raw: mail.move_latency(clients["gm"], raw, timeout=mail.MESSAGE_TIMEOUT),
            ),
            (
                "(c) imapfilter: COPY+STORE+EXPUNGE",
                lambda raw: mail.move_latency(clients["ifl"], raw, timeout=mail.MESSAGE_TIMEOUT),
            ),
        ]
        results: list[list[float]] = [[] for _ in tools]
        missed = [0 for _ in tools]
        started = time.perf_counter()
        for i in range(WARMUP + n):
            for k, (_, measure) in enumerate(tools):  # interleaved: same conditions over time
                took = measure(mail.offender_message(f"lat{k}-{i}"))
                if took is None:
                    missed[k] += 1
                elif i >= WARMUP:
                    results[k].append(took)
        elapsed = time.perf_counter() - started
        quarantined = len(daemon.events("item.quarantined"))
        print(
            f"{'tool':<40} {'p50 ms':>7} {'p99 ms':>7} {'mean':>6} {'max':>6} {'missed':>6}"
            f" | {'p50 over floor':>14} {'p99 over floor':>14}"
        )
        floor_p50, floor_p99, _, _ = mail.summary(results[0]) if results[0] else (0.0, 0.0, 0, 0)
        for (name, _), values, miss in zip(tools, results, missed, strict=True):
            if not values:
                print(f"{name:<40} no measurement ({miss} missed)")
                continue
            p50, p99, mean, top = mail.summary(values)
            over = (
                f"{'-':>14} {'-':>14}"
                if name.startswith("(a)")
                else f"{'+' + ms(p50 - floor_p50):>14} {'+' + ms(p99 - floor_p99):>14}"
            )
            print(
                f"{name:<40} {ms(p50):>7} {ms(p99):>7} {ms(mean):>6} {ms(top):>6} {miss:>6}"
                f" | {over}"
            )
        print(
            f"resolution: (a) select() wake-up on the IDLE socket; (b), (c) STATUS Quarantine and"
            f" INBOX polled every {mail.POLL_SECONDS * 1000:.0f} ms from the appending connection"
            f" (~0.2 ms a round trip). {WARMUP} warm-up messages per tool not counted;"
            f" {elapsed:.0f} s for the rounds. guardmail logged {quarantined} item.quarantined;"
            " each was fetched whole, written to the vault (blob fsync, dir fsync, SQLite"
            " journal commit) before the MOVE, then the action journaled (a commit) and the"
            " vault's HEAD witness written (fsync) after it."
        )
        back_to_back(sizes.pairs, [(tools[1][0], clients["gm"]), (tools[2][0], clients["ifl"])])


def back_to_back(pairs: int, movers: list[tuple[str, Any]]) -> None:
    """The second of two messages APPENDed as soon as the first is moved: it arrives while the
    watcher finishes the first one (journal, checkpoint) and before it is back in IDLE."""
    print(
        f"\nback-to-back: {pairs} pairs per tool, the 2nd APPENDed as soon as the 1st was moved;"
        f" 2nd message's latency (stuck = not moved within {STUCK_SECONDS:.0f} s)"
    )
    print(f"{'tool':<40} {'p50 ms':>7} {'max ms':>7} {'stuck':>6}")
    for name, client in movers:
        seconds: list[float] = []
        stuck = 0
        for j in range(pairs):
            mail.move_latency(
                client, mail.offender_message(f"pair{j}a"), timeout=mail.MESSAGE_TIMEOUT
            )
            took = mail.move_latency(
                client, mail.offender_message(f"pair{j}b"), timeout=STUCK_SECONDS
            )
            if took is None:
                stuck += 1
            else:
                seconds.append(took)
        p50, top = (mail.percentile(seconds, 0.5), max(seconds)) if seconds else (0.0, 0.0)
        print(f"{name:<40} {ms(p50):>7} {ms(top):>7} {stuck:>6}")


# --- 2. first-run scan --------------------------------------------------------------------------


def part_scan(sizes: Sizes, *, bare: bool = True) -> None:
    users = {"gmscan": "pw-gmscan", "barescan": "pw-barescan", "ifscan": "pw-ifscan"}
    n = sizes.folder
    rng = random.Random(20261125)
    corpus = [mail.corpus_message(i, rng) for i in range(n)]
    expected = sum(offender for _, offender in corpus)
    print(f"\n## 2. First run over an INBOX of {n:,} messages ({expected:,} from the offender)")
    dovecot_user = pwd.getpwnam("dovecot")
    with procs.workspace(users) as (server, tmp, stack):
        began = time.perf_counter()
        for user in users:
            mail.fill_maildir(
                server.maildir(user),
                [raw for raw, _ in corpus],
                uid=dovecot_user.pw_uid,
                gid=dovecot_user.pw_gid,
            )
        wrote = time.perf_counter() - began
        began = time.perf_counter()
        uidnext: dict[str, int] = {}
        for user, password in users.items():
            server.doveadm("force-resync", "-u", user, "INBOX")
            client = mail.connect(server.imap_port, user, password)
            stack.callback(mail.logout, client)
            client.create_folder(mail.QUARANTINE)
            status = client.folder_status("INBOX", [b"MESSAGES", b"UIDNEXT"])
            if int(status[b"MESSAGES"]) != n:
                raise BenchError(f"{user}: INBOX has {status[b'MESSAGES']} messages, not {n}")
            uidnext[user] = int(status[b"UIDNEXT"])
        synced = time.perf_counter() - began
        size_mb = sum(len(raw) for raw, _ in corpus) / 1e6
        print(
            f"fill: {len(users)} x {n:,} files ({size_mb:.1f} MB each) written to Maildir cur/ in"
            f" {wrote:.1f} s, doveadm force-resync + STATUS check {synced:.1f} s"
        )
        rows: list[tuple[str, float, str]] = []

        config = procs.write_guardmail_config(tmp, server.imap_port, [("gmscan", users["gmscan"])])
        daemon = Guardmail(config, tmp / "guardmail.log")
        stack.callback(procs.stop_quietly, daemon)
        last_uid = str(uidnext["gmscan"] - 1)
        daemon.wait_for(
            lambda: any(
                e.fields.get("last_uid") == last_uid for e in daemon.events("imap.caught_up")
            ),
            timeout=120 + n * 0.05,
            what="guardmail caught_up",
        )
        cpu_caught = procs.cpu_seconds(daemon.pid)
        caught = next(
            e for e in daemon.events("imap.caught_up") if e.fields.get("last_uid") == last_uid
        )
        connected = daemon.events("imap.connected")[0].at - daemon.started
        total = caught.at - daemon.started
        acted = daemon.events("item.quarantined")
        # The messages of one chunk share the done text's "(one UID MOVE of N UIDs: ...)".
        chunks = Counter(str(e.fields.get("done", "")).partition(" (one ")[2] for e in acted)
        per_move = [n for note, n in chunks.items() if note] + [1] * chunks.get("", 0)
        rows.append(
            (
                "guardmail",
                total,
                f"logged in at {connected:.2f} s; {len(per_move)} UID MOVE commands for"
                f" {len(acted)} messages (median"
                f" {statistics.median(per_move) if per_move else 0:.0f}"
                " a command)",
            )
        )
        # When each chunk was archived and moved (its items.archived, or a lone item's
        # item.archived, then its item.quarantined).
        names = ("item.archived", "items.archived", "item.quarantined")
        marks = [e for e in daemon.events() if e.name in names]
        steps = [
            f"{e.name.split('.')[1]} {e.at - daemon.started:.1f}"
            for before, e in zip([None, *marks], marks, strict=False)
            if before is None or before.name != e.name
        ]
        print("guardmail chunks (s from start): " + ", ".join(steps))

        # Every archived item's DKIM/ARC check at receipt is recorded (receipt.checked, or a
        # group's receipts.checked with its count) or dropped (receipt.unchecked, a full queue
        # before issue 28): wait for all of them.
        def receipts() -> tuple[int, int]:
            groups = sum(int(e.fields.get("count", 0)) for e in daemon.events("receipts.checked"))
            alone = len(daemon.events("receipt.checked"))
            return alone + groups, len(daemon.events("receipt.unchecked"))

        try:
            daemon.wait_for(
                lambda: sum(receipts()) >= len(acted), timeout=120, what="receipt checks"
            )
        except BenchError as exc:
            print(f"receipt checks: {exc.args[0].splitlines()[0]}")
        checked, dropped = receipts()
        cpu_all = procs.cpu_seconds(daemon.pid)
        checks = [*daemon.events("receipt.checked"), *daemon.events("receipts.checked")]
        last = max((e.at for e in checks), default=daemon.started)
        print(
            f"receipt checks: {checked} recorded, {dropped} dropped, of {len(acted)} archived;"
            f" the last recorded at {last - daemon.started:.1f} s"
        )
        print(
            f"guardmail CPU (user+sys, all threads): {cpu_caught:.2f} s when caught up (seen"
            f" by the 10 ms poll), {cpu_all:.2f} s once every receipt check was done"
        )
        procs.stop_quietly(daemon)

        if bare:
            rows.append(
                ("bare MOVEs", bare_moves(server.imap_port, "barescan", users["barescan"]), "")
            )

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        filt = Imapfilter(tmp, server.imap_port, "ifscan", users["ifscan"], idle=False)
        stack.callback(procs.stop_quietly, filt)
        rows.append(("imapfilter", filt.wait_exit(timeout=120 + n * 0.05), "start to exit"))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # imapfilter is the one reaped
        ifl_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"imapfilter CPU (user+sys): {ifl_cpu:.2f} s")

        if bare:
            rows[1] = (
                rows[1][0],
                rows[1][1],
                "login, SEARCH FROM, one UID MOVE per message: median"
                f" {ms(rows[1][1] / expected)} ms",
            )
        print(f"{'tool':<11} {'seconds':>8} {'msg/s':>7} {'moved':>6} {'INBOX':>6}  notes")
        accounts = [user for user in users if bare or user != "barescan"]
        for (name, seconds, note), user in zip(rows, accounts, strict=True):
            client = mail.connect(server.imap_port, user, users[user])
            moved, left = mail.count(client, mail.QUARANTINE), mail.count(client, "INBOX")
            mail.logout(client)
            flag = "" if (moved, left) == (expected, n - expected) else "  MISMATCH"
            print(
                f"{name:<11} {seconds:>8.2f} {n / seconds:>7.0f} {moved:>6} {left:>6}  {note}{flag}"
            )
        ifl = rows[-1][1]
        print(
            f"guardmail / imapfilter: {total / ifl:.1f}x end to end; {total - connected:.2f} s"
            f" from guardmail's login (its imports, config and vault opening left out):"
            f" {(total - connected) / ifl:.1f}x"
        )
        print(
            "seconds: from starting the process; guardmail until its imap.caught_up line with"
            f" last_uid={last_uid} (log time, ms), imapfilter until it exits. guardmail fetches"
            " headers in batches of 500 and gathers the offenders into chunks of up to 500"
            " messages (32 MiB), read on a second connection one chunk ahead: one UID FETCH of a"
            " chunk whole, its blobs written (an fsync"
            " each) and journaled (one commit), one UID MOVE of the chunk, its actions journaled"
            " (one commit); 'bare MOVEs' is a client doing only one-by-one MOVEs (Dovecot's cost"
            " for each MOVE command in a big Maildir folder, about the same for 1 or 50 UIDs);"
            " imapfilter sends one SEARCH FROM and one COPY / STORE \\Deleted / EXPUNGE of the"
            " whole set, archiving nothing."
        )


def bare_moves(port: int, user: str, password: str) -> float:
    """Seconds for a bare client to log in, SEARCH FROM the offender and MOVE each UID alone."""
    began = time.perf_counter()
    client = mail.connect(port, user, password)
    try:
        client.select_folder("INBOX")
        for uid in client.search(["FROM", mail.OFFENDER]):
            client.move([uid], mail.QUARANTINE)
    finally:
        mail.logout(client)
    return time.perf_counter() - began


# --- main ---------------------------------------------------------------------------------------


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "run as root: the private Dovecot's mail belongs to the dovecot user"
    for tool in ("/usr/sbin/dovecot", shutil.which(procs.IMAPFILTER)):
        if tool is None or not Path(tool).exists():
            return "dovecot or imapfilter missing: run scripts/system-packages.sh as root"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--part", type=int, choices=(1, 2, 3), action="append", help="only these")
    ap.add_argument(
        "--other-client",
        action="store_true",
        help="part 1: each account also has a client that SELECTs INBOX and searches it every"
        " 20 ms, as the person's own mail program does",
    )
    ap.add_argument(
        "--keep-inotify-limit",
        action="store_true",
        help="part 3: leave fs.inotify.max_user_instances as it is (default: raise it for the"
        " part and restore it; else Dovecot polls every 30 s past 128 IDLE sessions)",
    )
    ap.add_argument(
        "--no-bare",
        action="store_true",
        help="part 2: leave out the bare client's one-by-one MOVEs (minutes on a loaded machine;"
        " imap_move.py measures a MOVE's cost by set size)",
    )
    args = ap.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    problem = preflight()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    print("\n".join(procs.machine_lines()))
    began = time.perf_counter()
    failed = []
    parts: list[tuple[int, Callable[[Sizes], None]]] = [
        (1, lambda s: part_latency(s, other_client=args.other_client)),
        (2, lambda s: part_scan(s, bare=not args.no_bare)),
        (
            3,
            lambda s: imap_accounts.part_accounts(
                s.accounts, s.account_messages, raise_inotify=not args.keep_inotify_limit
            ),
        ),
    ]
    for number, run in parts:
        if args.part and number not in args.part:
            continue
        try:
            run(sizes)
        except Exception as exc:  # report, go on to the next part
            failed.append(number)
            print(f"part {number} FAILED: {exc}", file=sys.stderr)
            traceback.print_exc()
    print(
        f"\ntotal {time.perf_counter() - began:.0f} s"
        + (f"; failed parts: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
