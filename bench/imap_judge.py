"""The IMAP scan's header judgment alone, with its memo (channels/imap/memo.py) and without.

Judges 20,000 header sections in batches of 500, as a first scan's reader does, in two folders:
the one bench/imap.py fills (every sender distinct: the memo's worst case) and the same with
each innocent From line drawn from 300 correspondents (a mailbox's usual shape). Prints thread
CPU seconds, best of three interleaved runs, memo off (the baseline) beside memo on, and checks
that both send the same messages to be fetched whole. No server, no I/O.

    python bench/imap_judge.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imap_mail  # noqa: E402  (bench/ is on the path when run as a script)

from guardmail.channels.imap.batch import Folder  # noqa: E402
from guardmail.channels.imap.judge import FolderJudge  # noqa: E402
from guardmail.core.rules import OffenderRule, RuleSet  # noqa: E402
from guardmail.pipeline import Pipeline  # noqa: E402

MESSAGES = 20_000
BATCH = 500
CORRESPONDENTS = 300
WHERE = Folder(tenant="t", account="a", folder="INBOX", uidvalidity=1)
RULES = RuleSet([OffenderRule(name="Ex", addresses=(imap_mail.OFFENDER,))])


def folders() -> dict[str, list[bytes]]:
    rng = random.Random(28)
    raws = [imap_mail.corpus_message(i, rng)[0] for i in range(MESSAGES)]
    bench = [r[: r.index(b"\r\n\r\n") + 4] for r in raws]
    people = [
        f"From: Person {p} <person{p}@site{p % 97}.example>".encode() for p in range(CORRESPONDENTS)
    ]
    usual = []
    for head in bench:
        lines = head.split(b"\r\n")
        if imap_mail.OFFENDER.encode() not in lines[1]:
            lines[1] = people[rng.randrange(CORRESPONDENTS)]
        usual.append(b"\r\n".join(lines))
    return {"bench (all senders distinct)": bench, f"{CORRESPONDENTS} correspondents": usual}


def judge(heads: list[bytes], *, memo: bool) -> tuple[float, list[int]]:
    vault: Any = None  # never reached: only the header judgment runs
    actions: Any = None
    pipeline = Pipeline(vault=vault, rules=RULES)
    judging = FolderJudge(pipeline=pipeline, actions=actions, account="a", folder="INBOX")
    if not memo:
        judging.memo.now = lambda: None  # type: ignore[method-assign]
    batches = [
        {u: (h, len(h)) for u, h in enumerate(heads[k : k + BATCH], start=k + 1)}
        for k in range(0, len(heads), BATCH)
    ]
    began = time.thread_time()
    whole = [uid for b in batches for uid, _ in judging.offenders(WHERE, b)]
    return time.thread_time() - began, whole


def main() -> int:
    print(f"{MESSAGES:,} header sections in batches of {BATCH}; thread CPU, best of 3")
    for name, heads in folders().items():
        runs: dict[bool, list[tuple[float, list[int]]]] = {False: [], True: []}
        for _ in range(3):  # interleaved: a neighbour's burst falls on both alike
            for memo in (False, True):
                runs[memo].append(judge(heads, memo=memo))
        got = {}
        for memo, each in runs.items():
            if any(w != each[0][1] for _, w in each):
                raise SystemExit("the judgment is not repeatable")
            got[memo] = (min(t for t, _ in each), each[0][1])
        if got[False][1] != got[True][1]:
            raise SystemExit(f"{name}: the memo changed what is fetched whole")
        off, on = got[False][0], got[True][0]
        print(
            f"{name:30} memo off {off:.3f} s ({off / MESSAGES * 1e6:.1f} us a header)"
            f"  memo on {on:.3f} s ({on / MESSAGES * 1e6:.1f} us)"
            f"  {len(got[True][1])} to fetch whole"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
