"""Real writers for bench/aliases.py's text signal: senders of the SpamAssassin public corpus's ham.

The text signal (guardmail/core/alias_text.py) must be measured on real authorship: a generator
that gives every alias message the offender's text would make it "find" them by that artefact.
So each generated offender writes as one real sender of the ham corpus (bench/public_mail.py):

- ``writers``: every ham sender (From address) with at least ``MIN_TEXTS`` messages whose own
  words (``own_text``) are at least ``MIN_OWN_TEXT`` characters long, automated senders (feeds,
  newsletters) left out; each text is the message's first text part cut at its signature or
  list footer (the generated messages carry a signature of their own), in corpus order.
- ``split``: a writer's first texts are what the offender wrote before (learned, as the
  ``MAX_PROFILE`` newest signatures are kept), the rest are held out: the alias messages use
  them, so no alias message repeats a learned text.
- The writers are shuffled (seeded) and dealt: the first ones to the offenders, the others to
  ``calibration``, which fits the text signal's likelihood ratios on writers the recall is not
  measured on: per band of best similarity, P(band | a held-out text of the profile's own
  writer) over P(band | a text of another sender, many on the same mailing lists).
- Every message of a writer dealt to an offender leaves the unrelated mail (it is the same
  person; counted as unrelated it would be a false positive the linker is right about).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardmail.core.alias_body import body_text
from guardmail.core.alias_features import address_key
from guardmail.core.alias_text import (
    BANDS,
    MAX_PROFILE,
    MIN_OWN_TEXT,
    Signature,
    best_similarity,
    own_text,
    signature,
)
from guardmail.core.item import mail_identities

MIN_TEXTS = 3
MAX_DIFFERENT = 1500  # texts of other senders compared with every calibration profile
AUTOMATED: tuple[str, ...] = ("rss", "feed", "news", "subscri", "digest", "bulletin")
AUTOMATED += ("noreply", "announce", "bounce", "owner-", "daemon", "alert", "update")
# The bands the calibration table reports (those of core/alias_text.py and finer ones).
REPORT_BANDS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.16, 0.12, 0.08, 0.04, 0.0)


@dataclass
class Writer:
    address: str
    texts: list[str]  # usable texts, corpus order
    sources: set[str] = field(default_factory=set)  # every ham message of theirs

    def split(self) -> tuple[list[str], list[str]]:
        """(learned, held out): at most ``MAX_PROFILE`` learned, at least one third held out."""
        n = min(MAX_PROFILE, len(self.texts) - max(1, len(self.texts) // 3))
        return self.texts[:n], self.texts[n:]


def prose(text: str) -> str:
    """``text`` cut at its signature delimiter or a list footer's rule."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s in ("--", "-- ") or s.startswith("_____"):
            break
        out.append(line.rstrip())
    return "\r\n".join(out).strip("\r\n")


def writers(ham: list[tuple[str, bytes]]) -> list[Writer]:
    by: dict[str, Writer] = {}
    for name, raw in ham:
        sender = next(
            (i.address for i in mail_identities(raw) if i.source == "From" and i.address), ""
        )
        key = address_key(sender)
        if not key or any(a in key for a in AUTOMATED):
            continue
        w = by.setdefault(key, Writer(key, []))
        w.sources.add(f"ham/{name}")
        text = prose(body_text(raw))
        if len(own_text(text)) >= MIN_OWN_TEXT:
            w.texts.append(text)
    return sorted((w for w in by.values() if len(w.texts) >= MIN_TEXTS), key=lambda w: w.address)


def deal(found: list[Writer], n: int, seed: int) -> tuple[list[Writer], list[Writer]]:
    """(the offenders' writers, the calibration writers)."""
    shuffled = list(found)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:n], shuffled[n:]


def _bands(values: list[float]) -> list[int]:
    counts = [0] * len(REPORT_BANDS)
    for v in values:
        for i, low in enumerate(REPORT_BANDS):
            if v >= low:
                counts[i] += 1
                break
    return counts


def calibration(calib: list[Writer], others: list[tuple[str, str]], seed: int) -> dict[str, Any]:
    """The likelihood ratio of each similarity band, fitted on ``calib`` writers: their held-out
    texts against their own profile (same writer) and ``others`` (sender, text) against every
    profile but their sender's (another writer)."""
    profiles = {w.address: [s for s in map(signature, w.split()[0]) if s] for w in calib}
    same: list[float] = []
    for w in calib:
        for text in w.split()[1]:
            held = signature(text)
            if held:
                same.append(best_similarity(held, profiles[w.address]))
    pool = list(others)
    random.Random(seed).shuffle(pool)
    different: list[float] = []
    texts = 0
    for sender, text in pool:
        sig: Signature = signature(text)
        if not sig:
            continue
        texts += 1
        for address, profile in profiles.items():
            if address != sender and profile:
                different.append(best_similarity(sig, profile))
        if texts >= MAX_DIFFERENT:
            break
    s_counts, d_counts = _bands(same), _bands(different)
    rows = []
    for i, low in enumerate(REPORT_BANDS):
        ps = s_counts[i] / len(same) if same else 0.0
        pd = d_counts[i] / len(different) if different else 0.0
        rows.append(
            {
                "band": f">= {low}",
                "same": s_counts[i],
                "different": d_counts[i],
                "p_same": ps,
                "p_different": pd,
                # with no pair of different writers in the band: the rule of three's bound
                "lr": ps / pd if pd else None,
                "lr_lower": ps / (3 / len(different)) if not pd and different else None,
            }
        )
    # The shipped bands (core/alias_text.py), each from its lower edge to the next one up:
    # the measured LR and the low end of its ~95% interval (the log ratio less two standard
    # errors, from the counts): what the shipped LR is set to, rounded down.
    fitted = []
    edges = [math.inf] + [low for low, _ in BANDS]
    for (low, shipped), high in zip(BANDS, edges, strict=False):
        ns = sum(1 for v in same if low <= v < high)
        nd = sum(1 for v in different if low <= v < high)
        row: dict[str, Any] = {"from": low, "to": high, "same": ns, "different": nd}
        row["shipped"] = shipped
        if ns and nd:
            lr = (ns / len(same)) / (nd / len(different))
            row["lr"] = lr
            row["lr_low95"] = lr * math.exp(-2 * math.sqrt(1 / ns + 1 / nd))
        fitted.append(row)
    return {
        "fitted": fitted,
        "writers": len(calib),
        "same_pairs": len(same),
        "different_texts": texts,
        "different_pairs": len(different),
        "rows": rows,
        "shipped": [{"from": low, "lr": lr} for low, lr in BANDS],
    }


def ham_others(ham: list[tuple[str, bytes]], excluded: set[str]) -> list[tuple[str, str]]:
    """(sender, prose) of every ham message whose sender is not in ``excluded``."""
    out = []
    for _name, raw in ham:
        sender = next(
            (i.address for i in mail_identities(raw) if i.source == "From" and i.address), ""
        )
        key = address_key(sender)
        if key and key not in excluded:
            out.append((key, prose(body_text(raw))))
    return out


def tarball_ham(public: Path) -> list[tuple[str, bytes]]:
    import public_mail

    return public_mail.messages(public, public_mail.HAM)
