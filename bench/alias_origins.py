"""The origin signals measured on real senders: how often two messages share an IP, a client,
or both, when one sender wrote both, and when two different senders did.

Every sender of the SpamAssassin public corpus (bench/public_mail.py) is treated as an offender
the index has learned: each message is compared with every other sender's profile (the union of
their messages' first external hops / X-Originating-IPs, clients, or (IP, client) pairs, as
core/alias_features.py extracts them), and each sender with 2+ messages has their last message
compared with the profile of the others. The likelihood ratio of a match is P(match | same
sender) / P(match | different senders); its low end of ~95% is ``lr * exp(-2 * sqrt(1/ns +
1/nd))`` (a log-normal interval, as the text signal's, bench/alias_writers.py). Fitted on the
ham, checked on the spam (a set the fit never saw; its senders are mostly spam campaigns, so
"the same sender" there is often one actor under many addresses).

A sender is a From address: one person writing from two addresses counts as two different
senders here, so the "different" rates are upper bounds. The IPs are compared within
``IP_WINDOW`` of each other's Date (as core/aliases.py compares them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from guardmail.core.alias_features import Features, extract
from guardmail.core.alias_weights import IP_WINDOW
from guardmail.core.headers import header_fields
from guardmail.core.item import mail_identities

Keys = Callable[[Features], set[str]]
KEYS: dict[str, Keys] = {
    "ip": lambda f: set(f.origin_ips),
    "client": lambda f: {f.client} if f.client else set(),
    "ip+client": lambda f: {f"{ip}|{f.client}" for ip in f.origin_ips} if f.client else set(),
}


def _date(raw: bytes) -> datetime | None:
    for name, value in header_fields(raw):
        if name.lower() == "date":
            try:
                when = parsedate_to_datetime(value[:200])
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            return when if when.utcoffset() is not None else None
    return None


def _near(a: list[datetime | None], b: datetime | None, windowed: bool) -> bool:
    if not windowed:
        return True
    return b is not None and any(x is not None and abs(x - b) <= IP_WINDOW for x in a)


def measure(mail: Iterable[tuple[str, bytes]]) -> dict[str, dict[str, Any]]:
    """Per signal (``KEYS``): matches among same-sender and different-sender comparisons."""
    rows: list[tuple[Features, datetime | None]] = []
    for _, raw in mail:
        f = extract(raw, mail_identities(raw), body=False)
        if f.address:
            rows.append((f, _date(raw)))
    by: dict[str, list[tuple[Features, datetime | None]]] = defaultdict(list)
    for row in rows:
        by[row[0].address].append(row)
    out: dict[str, dict[str, Any]] = {}
    for what, keys in KEYS.items():
        windowed = what != "client"
        # key -> sender -> the dates of their messages with it
        post: dict[str, dict[str, list[datetime | None]]] = defaultdict(lambda: defaultdict(list))
        for f, when in rows:
            for k in keys(f):
                post[k][f.address].append(when)
        with_profile = {a for a, fs in by.items() if any(keys(f) for f, _ in fs)}
        profiles = len(with_profile)
        different = 0
        for f, when in rows:
            matched: set[str] = set()
            for k in keys(f):
                matched |= {
                    a for a, ds in post[k].items() if a != f.address and _near(ds, when, windowed)
                }
            different += len(matched)
        pairs = sum(profiles - (f.address in with_profile) for f, _ in rows)
        same = tried = 0
        for fs in by.values():
            if len(fs) < 2:
                continue
            earlier = [(k, d) for g, d in fs[:-1] for k in keys(g)]
            if not earlier:
                continue
            tried += 1
            last, when = fs[-1]
            same += any(k in keys(last) and _near([d], when, windowed) for k, d in earlier)
        ps = same / tried if tried else math.nan
        pd = different / pairs if pairs else math.nan
        lr = ps / pd if pd else math.inf
        low = (
            lr * math.exp(-2 * math.sqrt(1 / same + 1 / different)) if same and different else None
        )
        out[what] = {
            "same": same,
            "same_tried": tried,
            "different": different,
            "different_pairs": pairs,
            "lr": lr,
            "lr_low95": low,
        }
    return out


def calibration(ham: list[tuple[str, bytes]], spam: list[tuple[str, bytes]]) -> dict[str, Any]:
    """``measure`` on the ham (the fit) and on the spam (the check)."""
    return {"ham": measure(ham), "spam": measure(spam)}
