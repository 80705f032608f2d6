"""Dovecot's cost of one UID MOVE as its UID set grows, in a 20,000-message Maildir INBOX.

Sets of 1, 10, 100 and 1,000 UIDs, contiguous (``a:b``) and scattered (every tenth UID, as an
offender's mail sits among other mail), each moved with one UID MOVE to another folder; each
size is measured ``--rounds`` times on UIDs not moved before, and the median is printed with
the cost per UID. guardmail's first scan (watch.py) sizes its MOVE sets from these figures.
Needs root, like imap.py (Dovecot's mail belongs to the ``dovecot`` user).

    python bench/imap_move.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import pwd
import random
import statistics
import sys
import time
from collections.abc import Sequence

import imap_mail as mail
import imap_procs as procs

SIZES = (1, 10, 100, 1000)
SPREAD = 10  # a scattered set takes every tenth UID


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    need = sum(SIZES) * (args.rounds + SPREAD)
    if args.rounds > SPREAD or need > args.messages:
        print(f"--messages must be at least {need}, --rounds at most {SPREAD}", file=sys.stderr)
        return 2
    print("\n".join(procs.machine_lines()))
    users = {"mover": "pw-mover"}
    rng = random.Random(20261202)
    corpus = [mail.corpus_message(i, rng)[0] for i in range(args.messages)]
    who = pwd.getpwnam("dovecot")
    with procs.workspace(users) as (server, _tmp, stack):
        mail.fill_maildir(server.maildir("mover"), corpus, uid=who.pw_uid, gid=who.pw_gid)
        server.doveadm("force-resync", "-u", "mover", "INBOX")
        client = mail.connect(server.imap_port, "mover", users["mover"])
        stack.callback(mail.logout, client)
        client.create_folder(mail.QUARANTINE)
        client.select_folder("INBOX")
        free = sorted(client.search(["ALL"]))  # UIDs not moved yet, ascending
        print(f"\nINBOX: {len(free):,} messages; one UID MOVE of each set to {mail.QUARANTINE}")
        print(f"{'UIDs':>5} {'set':<10} {'ms median':>9} {'min':>7} {'max':>7} {'ms/UID':>8}")
        cursor = 0
        for size in SIZES:
            for kind in ("contiguous", "scattered"):
                took: list[float] = []
                for r in range(args.rounds):
                    if kind == "contiguous":
                        uids = free[cursor : cursor + size]
                    else:  # round r takes the r-th of every ten UIDs of one span
                        uids = free[cursor + r : cursor + size * SPREAD : SPREAD]
                    cursor += size if kind == "contiguous" else 0
                    began = time.perf_counter()
                    client.move(uids, mail.QUARANTINE)
                    took.append((time.perf_counter() - began) * 1000)
                if kind == "scattered":
                    cursor += size * SPREAD
                median = statistics.median(took)
                print(
                    f"{size:>5} {kind:<10} {median:>9.1f} {min(took):>7.1f} {max(took):>7.1f}"
                    f" {median / size:>8.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
