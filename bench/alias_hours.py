"""When bench/aliases.py's offenders write: evenly over the day, or in habitual hours.

The first generator spread each offender's mail evenly over the 24 hours (and sent every alias
message at 12:00 UTC), so the timing signal (core/alias_signals.py: the Date's hour +-1 holds
half or more of the offender's 20+ learned messages) could never fire: weaker than a real
person, who writes in habitual hours. ``--hours habits`` gives each offender habits measured
on real senders, not assumed:

- ``calibration``: every sender of the public corpus's ham with 21+ dated messages; the share
  of their messages in their busiest 3 hours (+-1 around one hour, UTC), and the timing signal
  on real senders: each message against the sender's other messages (same sender), and every
  message of every other sender against their profile (different senders), the same test as
  ``timing``. On 2002's ham (39 senders, 1,422 messages) the busiest 3 hours hold a median 36%
  of a sender's mail (22% to 97%; evenly spread would be 12.5%); the signal fires for 8.0% of a
  sender's own messages, for 1.1% of another sender's: LR 7 (the spam has no sender with 21
  dated messages, so there is no check set; the shipped LR 3 is not changed on this).
- ``Habit``: an offender's busiest hour and the share of their mail in the 3 hours around it,
  drawn from ``SHARES`` (those 39 senders' shares, measured with ``calibration``); a message
  lands in those 3 hours with that probability, else in any of the other 21 hours. Their
  alias messages are drawn the same way: a person's habits do not change with the account.

The habits are drawn from a random generator of their own (seeded), so the rest of the set
(names, addresses, clients, texts) is the same with either ``--hours``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from guardmail.core.alias_features import extract
from guardmail.core.alias_signals import timing
from guardmail.core.item import mail_identities

MIN_DATED = 21
# The busiest-3-hours share of each ham sender with 21+ dated messages (``calibration`` on
# the SpamAssassin public corpus's ham, bench/public_mail.py; 2026-12-03).
SHARES: tuple[float, ...] = (
    0.22,
    0.22,
    0.24,
    0.26,
    0.27,
    0.28,
    0.28,
    0.28,
    0.28,
    0.29,
    0.3,
    0.31,
    0.31,
)
SHARES += (0.32, 0.32, 0.34, 0.34, 0.35, 0.36, 0.36, 0.36, 0.37, 0.37, 0.38, 0.39, 0.4)
SHARES += (0.41, 0.45, 0.45, 0.46, 0.46, 0.48, 0.49, 0.5, 0.5, 0.55, 0.66, 0.79, 0.97)


@dataclass(frozen=True, slots=True, kw_only=True)
class Habit:
    peak: int  # the middle of the busiest 3 hours, UTC
    share: float  # of the messages in those 3 hours

    def hour(self, rng: random.Random) -> int:
        if rng.random() < self.share:
            return (self.peak + rng.choice((-1, 0, 1))) % 24
        return (self.peak + 2 + rng.randrange(21)) % 24  # any of the other 21 hours


def habits(n: int, seed: int) -> list[Habit]:
    rng = random.Random(f"habits/{seed}")
    return [Habit(peak=rng.randrange(24), share=rng.choice(SHARES)) for _ in range(n)]


def calibration(ham: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The busiest-3-hours shares of real senders and the timing signal's rates on them (see
    the module docstring)."""
    by: dict[str, list[int]] = defaultdict(list)
    for _, raw in ham:
        f = extract(raw, mail_identities(raw), body=False, learn=False)
        if f.address and f.hour >= 0:
            by[f.address].append(f.hour)
    big = {a: h for a, h in by.items() if len(h) >= MIN_DATED}
    profiles: dict[str, tuple[int, ...]] = {}
    same = tried = 0
    shares: list[float] = []
    for a, hours in big.items():
        counts = [0] * 24
        for h in hours:
            counts[h] += 1
        profiles[a] = tuple(counts)
        for h in hours:  # this message against the sender's other messages
            rest = list(counts)
            rest[h] -= 1
            tried += 1
            same += timing(tuple(rest), h) is not None
        busiest = max(counts[(k - 1) % 24] + counts[k] + counts[(k + 1) % 24] for k in range(24))
        shares.append(round(busiest / len(hours), 2))
    different = pairs = 0
    for b, hours in by.items():
        for h in hours:
            for a, p in profiles.items():
                if a != b:
                    pairs += 1
                    different += timing(p, h) is not None
    p_same = same / tried if tried else 0.0
    p_diff = different / pairs if pairs else 0.0
    return {
        "senders": len(big),
        "messages": sum(len(h) for h in big.values()),
        "shares": sorted(shares),
        "same": same,
        "same_tried": tried,
        "different": different,
        "different_pairs": pairs,
        "lr": p_same / p_diff if p_diff else None,
    }
