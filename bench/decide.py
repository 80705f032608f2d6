"""Microseconds per decision for 10, 1,000 and 10,000 offenders, beside a naive loop-over-rules.

Each offender has two addresses, one domain, one glob, one regex and one display-name glob, so
10,000 offenders are 60,000 rules. Each message claims three identities (From with a display
name, Reply-To, Return-Path); about one in ten comes from an offender, by a different rule kind
each time. Identities are read from the headers beforehand: this measures ``decide`` alone.

The baseline is what a first version would do: for every identity, loop over every offender and
every rule, with all normalisation of the rules and all regex compilation done up front.
Both must reach the same verdicts; the script exits 1 if they do not. Under each row: the kinds
of message among the slowest 1% of first sightings, how many first sightings the scheduler
interrupted (the thread's context switches, from getrusage; on a shared machine they make most
of the p99) with the CPU p50 / p99 of the others, and the gc collections during them.

    python bench/decide.py            # full run (about a minute)
    python bench/decide.py --quick    # 10 and 1,000 offenders, fewer messages (CI)
    python bench/decide.py --base /tmp/decide-base   # main's code first, each size (a child
                                      # process importing guardmail from that worktree of main)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import translate
from pathlib import Path

from guardmail.core.confusables import fold
from guardmail.core.identity import (
    domain_suffixes,
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


# The offender rule each tenth message is caught by, in turn (the others are clean).
KINDS = ("address", "gmail", "domain", "glob", "regex", "name")


def kind_of(k: int) -> str:
    """What message ``k`` of ``messages`` is: clean, or which rule kind catches it."""
    return KINDS[k // 10 % 6] if k % 10 == 0 else "clean"


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


COLUMNS = (
    f"{'offenders':>9} {'rules':>6} | {'new sender us p50':>17} {'p99':>6} {'mean':>6} |"
    f" {'cpu p50':>7} {'p99':>6} | {'repeat p50':>10} {'p99':>6} | {'cpu p50':>7} {'p99':>6} |"
    f" {'naive us p50':>12} {'p99':>9} {'n':>5} | {'build s':>7}"
)


def measure(n: int, count: int, *, naive_loop: bool = True) -> dict[str, float | int | bool | str]:
    """Figures for ``n`` offenders (the same messages for a given ``n``, in any process)."""
    rng = random.Random(20261125 + n)
    rules_list = offenders(n)
    t0 = time.perf_counter()
    rules = RuleSet(rules_list)
    build = time.perf_counter() - t0
    msgs = messages(n, count, rng)
    for m in msgs[:200]:  # warm-up
        decide(m, rules, now=NOW)
    first: list[tuple[float, float]] = []
    # What makes the tail: a decision the scheduler took the CPU from (it comes back to cold
    # caches), and the collector's passes (counted, and timed, by a gc callback).
    switched: list[bool] = []
    collected = [0, 0.0]
    gc.callbacks.append(_gc_watch(collected))
    for m in msgs:
        clear_caches()  # every sender is seen for the first time: the worst case
        before = _switches()
        first.append(timed_both(decide, m, rules, now=NOW))
        switched.append(_switches() != before)
    gc.callbacks.pop()
    indexed, indexed_cpu = [w for w, _ in first], [c for _, c in first]
    calm = [c for c, s in zip(indexed_cpu, switched, strict=True) if not s]
    # Which messages make the tail: the kinds of the slowest 1% by CPU time.
    slowest = sorted(range(len(first)), key=lambda k: indexed_cpu[k])[-max(1, len(first) // 100) :]
    tail = Counter(kind_of(k) for k in slowest)
    warm = msgs[-1000:]
    for m in warm:  # senders seen before (the same offender all day): memoised forms
        decide(m, rules, now=NOW)
    again = [timed_both(decide, m, rules, now=NOW) for m in warm]
    repeat, repeat_cpu = [w for w, _ in again], [c for _, c in again]
    ok = True
    naive_times = [float("nan")]
    sample = msgs[: max(20, min(len(msgs), 200_000 // n))]
    if naive_loop:
        naive = Naive.build(rules_list)
        naive_times = [timed(naive.decide, m) for m in sample]
        for m in sample:
            v = decide(m, rules, now=NOW)
            if (v.action, v.offender if v.action is not Action.PASS else None) != naive.decide(m):
                # Same action required; the offender may differ only when two tie.
                if v.action is not naive.decide(m)[0]:
                    print(f"MISMATCH for {m}: {v.action} vs {naive.decide(m)}", file=sys.stderr)
                    ok = False
    hits = sum(decide(m, rules, now=NOW).action is not Action.PASS for m in msgs)
    return {
        "n": n,
        "p50": statistics.median(indexed),
        "p99": pct(indexed, 0.99),
        "mean": statistics.fmean(indexed),
        "cpu_p50": statistics.median(indexed_cpu),
        "cpu_p99": pct(indexed_cpu, 0.99),
        "repeat_p50": statistics.median(repeat),
        "repeat_p99": pct(repeat, 0.99),
        "repeat_cpu_p50": statistics.median(repeat_cpu),
        "repeat_cpu_p99": pct(repeat_cpu, 0.99),
        "naive_p50": statistics.median(naive_times),
        "naive_p99": pct(naive_times, 0.99),
        "naive_n": len(sample) if naive_loop else 0,
        "build": build,
        "hits": hits,
        "count": len(msgs),
        "ok": ok,
        "tail": ", ".join(f"{kind} {n}" for kind, n in tail.most_common()),
        "switched": sum(switched),
        "tail_switched": sum(switched[k] for k in slowest),
        "calm_p50": statistics.median(calm) if calm else float("nan"),
        "calm_p99": pct(calm, 0.99) if calm else float("nan"),
        "gc_runs": collected[0],
        "gc_ms": collected[1],
    }


def _switches() -> int:
    """Context switches of this thread so far (voluntary and not)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_nvcsw + usage.ru_nivcsw


def _gc_watch(collected: list[float]) -> Callable[[str, dict[str, int]], None]:
    """A gc callback adding to ``collected`` the number of collections and their ms."""
    started = [0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter_ns()
        else:
            collected[0] += 1
            collected[1] += (time.perf_counter_ns() - started[0]) / 1e6

    return watch


def row(r: dict[str, float | int | bool | str], label: str = "") -> str:
    return (
        f"{r['n']:>9} {6 * r['n']:>6} | {r['p50']:>17.1f} {r['p99']:>6.1f} {r['mean']:>6.1f} |"
        f" {r['cpu_p50']:>7.1f} {r['cpu_p99']:>6.1f} | {r['repeat_p50']:>10.1f}"
        f" {r['repeat_p99']:>6.1f} | {r['repeat_cpu_p50']:>7.1f} {r['repeat_cpu_p99']:>6.1f} |"
        f" {r['naive_p50']:>12.1f} {r['naive_p99']:>9.1f} {r['naive_n']:>5} | {r['build']:>7.2f}"
        f"   ({r['hits']}/{r['count']} messages matched){label}"
        + (f"\n{'':>9} slowest 1% by CPU: {r['tail']}" if r.get("tail") else "")
        + (
            f"\n{'':>9} first sightings the scheduler interrupted: {r['switched']}/{r['count']}"
            f" ({r['tail_switched']} of the slowest 1%); CPU p50 / p99 of the others:"
            f" {r['calm_p50']:.1f} / {r['calm_p99']:.1f}; gc: {r['gc_runs']} collections,"
            f" {r['gc_ms']:.1f} ms"
            if "switched" in r
            else ""
        )
    )


def base_tree(path: Path) -> Path:
    """``path``, a detached checkout of main, made with ``git worktree add`` if absent."""
    if not (path / "guardmail" / "__init__.py").exists():
        repo = Path(__file__).resolve().parent.parent
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(path), "main"],
            check=True,
        )
    return path.resolve()


def measure_base(tree: Path, n: int, count: int) -> dict[str, float | int | bool | str]:
    """``measure`` in a child process that imports guardmail from ``tree`` (this script's own
    code measures both, so only the decision code differs). No naive loop: it is the same."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), "--count", str(count)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float | int | bool | str] = json.loads(out.splitlines()[-1])
    where = Path(str(result.pop("guardmail"))).resolve()
    if not where.is_relative_to(tree):
        raise SystemExit(f"the base run imported guardmail from {where}, not from {tree}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--base",
        type=Path,
        metavar="TREE",
        help="also measure main's code from TREE (a detached worktree of main, made if absent),"
        " each size right before this tree's",
    )
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = (10, 1000) if args.quick else (10, 1000, 10_000)
    count = args.count or (500 if args.quick else 5000)
    if args.child:
        import guardmail

        result = measure(args.child, count, naive_loop=False)
        print(json.dumps({**result, "guardmail": guardmail.__file__}))
        return 0
    tree = base_tree(args.base) if args.base else None
    print(COLUMNS)
    ok = True
    for n in sizes:
        if tree is not None:
            print(row(measure_base(tree, n, count), "  main"), flush=True)
        result = measure(n, count)
        ok = ok and bool(result["ok"])
        print(row(result, "  this tree" if tree is not None else ""), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
