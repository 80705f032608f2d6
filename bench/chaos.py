"""The crash campaign, long run: ``python bench/chaos.py --rounds 1000 [--seed N] [--channels ..]``.

Kills a real ``guardmail run`` watching the chosen channels at once (``--channels maildir`` by
default; ``all`` for every one, the SMTP filter in its first mode: smtp, smtp_bq and smtp_milter are
modes of one daemon source), with the warning sent through a local SMTP sink, at random instants and
at every crash point of ``guardmail.faults`` those channels reach, then checks every promise from
the outside (see tests/chaos/campaign.py). Prints rounds, kills, the crash points that killed, the
points reached, and every violation with the seed that replays it. Exit 1 on any violation.
The suite runs a short campaign (tests/integration/test_chaos.py).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos import Campaign  # noqa: E402
from tests.chaos.campaign import CHANNELS, every_channel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="kills per campaign")
    parser.add_argument("--seed", type=int, default=None, help="replay this campaign")
    parser.add_argument("--campaigns", type=int, default=1, help="campaigns of --rounds each")
    parser.add_argument(
        "--channels",
        default="maildir",
        help=f"comma-separated, of {', '.join(CHANNELS)}; or all",
    )
    args = parser.parse_args()
    channels = every_channel() if args.channels == "all" else tuple(args.channels.split(","))
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        parser.error(f"unknown channel(s) {', '.join(unknown)}: choose from {', '.join(CHANNELS)}")
    seeds = (
        [args.seed]
        if args.seed is not None
        else [random.randrange(2**32) for _ in range(args.campaigns)]
    )
    failed = False
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="guardmail-chaos-") as tmp:
            started = time.monotonic()
            result = Campaign(Path(tmp), seed=seed, channels=channels, log=print).run(args.rounds)
            print(f"{result.summary()} in {time.monotonic() - started:.0f} s")
            reached = ", ".join(f"{p} {n}" for p, n in sorted(result.reached.items()))
            print(f"  crash points passed (all rounds): {reached or 'none'}")
            for limit in result.limits:
                print(f"  known limit: {limit}")
            for violation in result.violations:
                print(f"  VIOLATION {violation}")
            failed |= bool(result.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
