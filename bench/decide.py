"""Microseconds per decision for 10, 1,000 and 10,000 offenders, beside a naive loop-over-rules.

Each offender has two addresses, one domain, one glob, one regex and one display-name glob, so
10,000 offenders are 60,000 rules. Each message claims three identities (From with a display
name, Reply-To, Return-Path); about one in ten comes from an offender, by a different rule kind
each time. Identities are read from the headers beforehand: this measures ``decide`` alone.

The baseline is what a first version would do: for every identity, loop over every offender and
every rule, with all normalisation of the rules and all regex compilation done up front.
Both must reach the same verdicts; the script exits 1 if they do not.

    python bench/decide.py            # full run (about a minute)
    python bench/decide.py --quick    # 10 and 1,000 offenders, fewer messages (CI)
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import translate

from guardmail.core.identity import (
    domain_suffixes,
    fold,
    normalize_address,
    normalize_display_name,
    normalize_domain,
)
from guardmail.core.item import Identity, mail_identities
from guardmail.core.rules import Action, OffenderRule, RuleSet, clear_caches, decide

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def offenders(n: int) -> list[OffenderRule]:
    return [
        OffenderRule(
            name=f"offender{i}",
            addresses=(f"stalker{i}@mail{i % 211}.example", f"alt.{i}@gmail.com"),
            domains=(f"harass{i}.example",),
            patterns=(f"*@burner{i}.example", f"re:^ali[a4]s{i}x[0-9]*@"),
            display_names=(f"Creep{i} *",),
            action=Action.BLOCK if i % 7 == 0 else Action.QUARANTINE,
        )
        for i in range(n)
    ]


def messages(n_offenders: int, count: int, rng: random.Random) -> list[tuple[Identity, ...]]:
    out = []
    for k in range(count):
        sender = f"person{rng.randrange(10**6)}@site{rng.randrange(5000)}.example"
        name = f"Person {k}"
        if k % 10 == 0:
            i = rng.randrange(n_offenders)
            sender, name = [
                (f"Stalker{i}+tag@MAIL{i % 211}.example", name),
                (f"a.l.t{i}@googlemail.com", name),
                (f"x@mx.harass{i}.example", name),
                (f"new@burner{i}.example", name),
                (f"ali4s{i}x77@fresh.example", name),
                (sender, f"Creep{i} the second"),
            ][k // 10 % 6]
        raw = (
            f"From: {name} <{sender}>\r\nReply-To: {sender}\r\n"
            f"Return-Path: <bounce{k}@list.example>\r\n\r\n"
        )
        out.append(mail_identities(raw.encode()))
    return out


@dataclass
class Naive:
    """Loop over every rule of every offender; rules prepared once."""

    prepared: list[tuple[OffenderRule, list[str], list[str], list[re.Pattern[str]], list[str]]]

    @classmethod
    def build(cls, rules: Sequence[OffenderRule]) -> Naive:
        prepared = []
        for o in rules:
            keys = [n.key for a in o.addresses if (n := normalize_address(a)) is not None]
            domains = [fold(normalize_domain(d)) for d in o.domains]
            pats = [
                re.compile(p[3:], re.I) if p.startswith("re:") else re.compile(translate(p), re.I)
                for p in o.patterns
            ]
            names = [normalize_display_name(n) for n in o.display_names]
            prepared.append((o, keys, domains, pats, names))
        return cls(prepared)

    def decide(self, identities: Sequence[Identity]) -> tuple[Action, str | None]:
        best: tuple[Action, str | None] = (Action.PASS, None)
        for ident in identities:
            norm = normalize_address(ident.address) if ident.address else None
            name = normalize_display_name(ident.display_name) if ident.display_name else None
            for o, keys, domains, pats, names in self.prepared:
                hit = False
                if norm is not None:
                    hit = norm.key in keys or any(
                        s in domains for s in domain_suffixes(fold(norm.domain))
                    )
                    hit = hit or any(p.search(t) for p in pats for t in (norm.address, norm.key))
                if name is not None and not hit:
                    hit = any(re.fullmatch(translate(n), name, re.I) for n in names)
                if hit and o.action.severity > best[0].severity:
                    best = (o.action, o.name)
        return best


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Microseconds one call of ``fn(*args, **kwargs)`` took."""
    start = time.perf_counter_ns()
    fn(*args, **kwargs)
    return (time.perf_counter_ns() - start) / 1000


def timed_both(fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, float]:
    """Microseconds one call took: wall time, and this thread's CPU time (which other
    processes on a loaded machine inflate far less, so figures compare across runs)."""
    cpu = time.thread_time_ns()
    start = time.perf_counter_ns()
    fn(*args, **kwargs)
    end = time.perf_counter_ns()
    return (end - start) / 1000, (time.thread_time_ns() - cpu) / 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes = (10, 1000) if args.quick else (10, 1000, 10_000)
    count = 500 if args.quick else 5000
    rng = random.Random(20261125)
    print(
        f"{'offenders':>9} {'rules':>6} | {'new sender us p50':>17} {'p99':>6} {'mean':>6} |"
        f" {'cpu p50':>7} {'p99':>6} | {'repeat p50':>10} {'p99':>6} | {'cpu p50':>7} {'p99':>6} |"
        f" {'naive us p50':>12} {'p99':>9} {'n':>5} | {'build s':>7}"
    )
    ok = True
    for n in sizes:
        rules_list = offenders(n)
        t0 = time.perf_counter()
        rules = RuleSet(rules_list)
        build = time.perf_counter() - t0
        naive = Naive.build(rules_list)
        msgs = messages(n, count, rng)
        for m in msgs[:200]:  # warm-up
            decide(m, rules, now=NOW)
        first: list[tuple[float, float]] = []
        for m in msgs:
            clear_caches()  # every sender is seen for the first time: the worst case
            first.append(timed_both(decide, m, rules, now=NOW))
        indexed, indexed_cpu = [w for w, _ in first], [c for _, c in first]
        warm = msgs[-1000:]
        for m in warm:  # senders seen before (the same offender all day): memoised forms
            decide(m, rules, now=NOW)
        again = [timed_both(decide, m, rules, now=NOW) for m in warm]
        repeat, repeat_cpu = [w for w, _ in again], [c for _, c in again]
        sample = msgs[: max(20, min(len(msgs), 200_000 // n))]
        naive_times = [timed(naive.decide, m) for m in sample]
        for m in sample:
            v = decide(m, rules, now=NOW)
            if (v.action, v.offender if v.action is not Action.PASS else None) != naive.decide(m):
                # Same action required; the offender may differ only when two tie.
                if v.action is not naive.decide(m)[0]:
                    print(f"MISMATCH for {m}: {v.action} vs {naive.decide(m)}", file=sys.stderr)
                    ok = False
        hits = sum(decide(m, rules, now=NOW).action is not Action.PASS for m in msgs)
        print(
            f"{n:>9} {6 * n:>6} | {statistics.median(indexed):>17.1f} {pct(indexed, 0.99):>6.1f}"
            f" {statistics.fmean(indexed):>6.1f} | {statistics.median(indexed_cpu):>7.1f}"
            f" {pct(indexed_cpu, 0.99):>6.1f} | {statistics.median(repeat):>10.1f}"
            f" {pct(repeat, 0.99):>6.1f} | {statistics.median(repeat_cpu):>7.1f}"
            f" {pct(repeat_cpu, 0.99):>6.1f} | {statistics.median(naive_times):>12.1f}"
            f" {pct(naive_times, 0.99):>9.1f} {len(sample):>5} | {build:>7.2f}"
            f"   ({hits}/{len(msgs)} messages matched)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
