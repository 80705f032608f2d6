"""Suspected aliases: how likely a new sender is one of the offenders, and why.

``AliasIndex`` holds what is known of each offender: the addresses and display names of their
config entry, and the features (core/alias_features.py) of every message of theirs the vault
archived. ``score`` compares a new message's features with it and returns, for each offender it
resembles, a ``Suspicion``: a likelihood and the signals behind it, each ``(signal, weight,
why)``.

The signals, their weights and the likelihood they add up to are in core/alias_weights.py.

The name forms are compared in core/alias_names.py, the text's contacts read in
core/alias_body.py, every other feature in core/alias_features.py.

Contracts: pure; ``score`` costs hash lookups per feature value plus a bounded comparison with
the candidates those find (at most ``MAX_NAMES_PER_OFFENDER`` names of one offender, strings of
bounded length), never a scan of every offender or archived message; each index key keeps at
most ``MAX_REFS`` references, one per offender (the newest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from guardmail.core.alias_features import (
    Features,
    address_key,
    local_skeleton,
    name_tokens,
)
from guardmail.core.alias_names import W_NAME_FIRST as W_NAME_FIRST
from guardmail.core.alias_names import W_NAME_FULL as W_NAME_FULL
from guardmail.core.alias_names import W_NAME_HANDLE as W_NAME_HANDLE
from guardmail.core.alias_names import W_NAME_INITIAL as W_NAME_INITIAL
from guardmail.core.alias_names import W_NAME_NEAR as W_NAME_NEAR
from guardmail.core.alias_names import W_NAME_SURNAME as W_NAME_SURNAME
from guardmail.core.alias_names import Signal as Signal
from guardmail.core.alias_names import compare_names as compare_names
from guardmail.core.alias_names import deletions, name_keys
from guardmail.core.alias_names import levenshtein as levenshtein
from guardmail.core.alias_text import (
    MAX_PROFILE,
    MAX_TEXT_CANDIDATES,
    Signature,
    band_weight,
    best_similarity,
)
from guardmail.core.alias_weights import (
    IP_WINDOW,
    TIMING_MIN_MESSAGES,
    TIMING_SHARE,
    W_BODY_ADDRESS,
    W_BODY_CONTACT,
    W_CLIENT,
    W_DKIM,
    W_IP,
    W_IP_OLD,
    W_LINKED,
    W_LOCAL,
    W_LOCAL_LONG,
    W_LOCAL_NEAR,
    W_LOCAL_SHORT,
    W_LOOKALIKE,
    W_MSGID,
    W_TEXT_MAX,
    W_TIMING,
    likelihood,
)

MAX_REFS = 64
MAX_NAMES_PER_OFFENDER = 32
MAX_OFFENDERS_SCORED = 16


# Local parts that name a role, not a person: anyone may write from them.
ROLE_LOCALS = frozenset(
    {
        "admin",
        "contact",
        "hello",
        "help",
        "info",
        "mail",
        "mailer",
        "noreply",
        "office",
        "postmaster",
        "sales",
        "support",
        "team",
        "user",
        "webmaster",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspicion:
    """How likely the sender is ``offender`` (0..1), and the signals that say so."""

    offender: str
    likelihood: float
    signals: tuple[Signal, ...]


@dataclass(frozen=True, slots=True)
class _Ref:
    offender: str
    seen_at: datetime | None


_Hit = Callable[[str, Signal], None]


class AliasIndex:
    """What is known of each offender, indexed by feature value.

    ``add`` only ever replaces a key's tuple of references with a longer copy (never mutates
    one), so a reader in another thread sees the old or the new tuple, both consistent.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[str, tuple[_Ref, ...]]] = {
            k: {}
            for k in (
                "address",
                "local",
                "local_del",
                "token",
                "ip",
                "dkim",
                "msgid",
                "client",
                "contact",
            )
        }
        # Each offender's names, with their ``_name_keys`` (compared only if they share one).
        self._names: dict[str, tuple[tuple[tuple[str, ...], frozenset[str]], ...]] = {}
        self.offenders: tuple[str, ...] = ()
        # Each offender's messages by hour of the day (UTC), a new tuple on every add.
        self._hours: dict[str, tuple[int, ...]] = {}
        # Each offender's ``MAX_PROFILE`` newest text signatures, each with its set (what a
        # comparison intersects with): one new tuple on every add, so a reader in another
        # thread never sees a signature without its set.
        self._texts: dict[str, tuple[tuple[Signature, frozenset[int]], ...]] = {}

    @classmethod
    def build(
        cls,
        offenders: Iterable[tuple[str, Sequence[str], Sequence[str]]],
        seen: Iterable[tuple[str, Features, datetime | None]] = (),
    ) -> AliasIndex:
        """An index of ``offenders`` (name, configured addresses, configured plain display
        names) and their archived messages' features ``seen`` (offender, features, when)."""
        index = cls()
        for name, addresses, display_names in offenders:
            index.offenders = (*index.offenders, name)
            for addr in addresses:
                index.add(name, Features(address=address_key(addr), local=local_skeleton(addr)))
            for display in display_names:
                tokens = name_tokens(display)
                if tokens:
                    index.add(name, Features(names=(tokens,)))
        for name, features, when in seen:
            if name in index.offenders:
                index.add(name, features, when)
        return index

    @property
    def wants_body(self) -> bool:
        """Whether a message's text can score: some offender's signature gave a contact (an
        offender's address named in a text scores only beside one: reading every message's
        text for that weak signal alone would cost more than it finds)."""
        return bool(self._values["contact"])

    def _put(self, kind: str, value: str, ref: _Ref) -> None:
        if not value:
            return
        # One reference per offender and value, the newest (a config entry's, timeless, is
        # never replaced): an offender's thousand messages from one client are one reference,
        # and cannot push other offenders out of the MAX_REFS.
        table = self._values[kind]
        old = table.get(value, ())
        for r in old:
            if r.offender == ref.offender:
                if r.seen_at is None or (ref.seen_at is not None and r.seen_at >= ref.seen_at):
                    return
        others = tuple(r for r in old if r.offender != ref.offender)
        table[value] = (*others, ref)[-MAX_REFS:]

    def add(self, offender: str, features: Features, seen_at: datetime | None = None) -> None:
        """Learn one message of ``offender`` (``seen_at`` None: from the config, timeless)."""
        ref = _Ref(offender, seen_at)
        # Only the From address is the offender's: the other addresses of their mail (Reply-To,
        # Sender, more From fields) are theirs to write, and could name anyone.
        self._put("address", features.address, ref)
        local = features.local
        if len(local) >= 4 and local not in ROLE_LOCALS:
            self._put("local", local, ref)
            if len(local) >= 6:
                for d in deletions(local):
                    self._put("local_del", d, ref)
        names = self._names.get(offender, ())
        for tokens in features.names:
            if len(names) < MAX_NAMES_PER_OFFENDER and all(n != tokens for n, _ in names):
                keys = name_keys(tokens)
                names = (*names, (tokens, keys))
                for key in keys:
                    self._put("token", key, _Ref(offender, None))
        self._names[offender] = names
        for ip in features.origin_ips:
            self._put("ip", ip, ref)
        for domain in features.dkim_domains:
            self._put("dkim", domain, ref)
        self._put("msgid", features.message_domain, ref)
        self._put("client", features.client, ref)
        for contact in features.signature_contacts:
            self._put("contact", contact, ref)
        if features.text:
            entry = (features.text, frozenset(features.text))
            self._texts[offender] = (*self._texts.get(offender, ()), entry)[-MAX_PROFILE:]
        if 0 <= features.hour < 24 and seen_at is not None:
            hours = list(self._hours.get(offender, (0,) * 24))
            hours[features.hour] += 1
            self._hours[offender] = tuple(hours)

    def score(
        self,
        features: Features,
        *,
        now: datetime,
        text: Callable[[], Signature] | None = None,
        decisive: float | None = None,
    ) -> list[Suspicion]:
        """Every offender ``features`` resemble, most likely first (at most
        ``MAX_OFFENDERS_SCORED``); offenders with no signal are left out. ``text`` gives the
        message's text signature (core/alias_text.py); it is called at most once, and only if
        another signal found an offender whose texts are known (``features.text`` is used if
        it is set). With ``decisive`` (the threshold a decision applies), the text is compared
        only for offenders it can move across it: below it, and at or above it with the text's
        strongest band (a decision then makes a signature for few messages; ``explain`` shows
        every signal)."""
        found: dict[str, dict[str, Signal]] = {}

        def hit(offender: str, signal: Signal) -> None:
            best = found.setdefault(offender, {})
            old = best.get(signal.signal)
            if old is None or old.weight < signal.weight:
                best[signal.signal] = signal

        v = self._values
        for key in features.addresses:
            for r in v["address"].get(key, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="linked_address",
                        weight=W_LINKED,
                        why=f"{key} was seen in the offender's mail or entry",
                    ),
                )
        self._score_local(features.local, hit)
        self._score_names(features, hit)
        for ip in features.origin_ips:
            for r in v["ip"].get(ip, ()):
                recent = r.seen_at is None or now - r.seen_at <= IP_WINDOW
                when = "within 30 days" if recent else "more than 30 days apart"
                hit(
                    r.offender,
                    Signal(
                        signal="origin_ip",
                        weight=W_IP if recent else W_IP_OLD,
                        why=f"sent from {ip}, as the offender's mail ({when})",
                    ),
                )
        for domain in features.dkim_domains:
            for r in v["dkim"].get(domain, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="dkim_domain",
                        weight=W_DKIM,
                        why=f"signed by {domain} (DKIM d=), as the offender's mail",
                    ),
                )
        if features.message_domain:
            for r in v["msgid"].get(features.message_domain, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="message_domain",
                        weight=W_MSGID,
                        why=f"Message-ID from {features.message_domain}, as the offender's mail",
                    ),
                )
        if features.client:
            for r in v["client"].get(features.client, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="client",
                        weight=W_CLIENT,
                        why=f"written with {features.client!r}, as the offender's mail",
                    ),
                )
        self._score_contacts(features.contacts, hit)
        if 0 <= features.hour < 24:
            for off in found:  # timing never makes a candidate: it only adds to other signals
                signal = self._timing(off, features.hour)
                if signal is not None:
                    hit(off, signal)
        if found and (text is not None or features.text):
            self._score_text(found, features.text or text, hit, decisive)
        out = [
            Suspicion(
                offender=name,
                likelihood=likelihood(s.weight for s in signals.values()),
                signals=tuple(sorted(signals.values(), key=lambda s: -s.weight)),
            )
            for name, signals in found.items()
        ]
        out.sort(key=lambda s: (-s.likelihood, s.offender))
        return out[:MAX_OFFENDERS_SCORED]

    def _score_text(
        self,
        found: dict[str, dict[str, Signal]],
        text: Signature | Callable[[], Signature] | None,
        hit: _Hit,
        decisive: float | None,
    ) -> None:
        """The text signal for the most likely ``MAX_TEXT_CANDIDATES`` offenders found whose
        texts are known (and, with ``decisive``, that it can move across it): bounded work
        whatever the message, never a candidate of its own."""
        known = [
            (sum(s.weight for s in signals.values()), o)
            for o, signals in found.items()
            if o in self._texts
        ]
        if decisive is not None:
            known = [
                (w, o)
                for w, o in known
                if likelihood((w,)) < decisive <= likelihood((w, W_TEXT_MAX))
            ]
        if not known or text is None:
            return
        known.sort(key=lambda x: (-x[0], x[1]))
        query = text() if callable(text) else text
        if not query:
            return
        for _, off in known[:MAX_TEXT_CANDIDATES]:
            profile = self._texts[off]
            value = best_similarity(query, [t for t, _ in profile], [v for _, v in profile])
            ratio, w = band_weight(value)
            if w > 0:
                hit(
                    off,
                    Signal(
                        signal="text",
                        weight=w,
                        why=f"text like the offender's (similarity {value:.2f} to the closest"
                        f" of their {len(profile)} newest messages; LR {ratio:g})",
                    ),
                )

    def _timing(self, offender: str, hour: int) -> Signal | None:
        hours = self._hours.get(offender)
        if hours is None:
            return None
        total = sum(hours)
        near = hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24]
        if total < TIMING_MIN_MESSAGES or near < TIMING_SHARE * total:
            return None
        return Signal(
            signal="timing",
            weight=W_TIMING,
            why=f"sent at {hour:02}h UTC, the hours of {near} of the offender's {total} messages",
        )

    def _score_contacts(self, contacts: tuple[str, ...], hit: _Hit) -> None:
        v = self._values
        for contact in contacts:
            kind, _, value = contact.partition(":")
            what = {"tel": "phone number", "at": "handle", "mail": "address"}.get(kind, kind)
            for r in v["contact"].get(contact, ()):
                hit(
                    r.offender,
                    Signal(
                        signal="body_contact",
                        weight=W_BODY_CONTACT,
                        why=f"the text gives the {what} {value!r} of the offender's signature",
                    ),
                )
            if kind == "mail":
                for r in v["address"].get(value, ()):
                    hit(
                        r.offender,
                        Signal(
                            signal="body_address",
                            weight=W_BODY_ADDRESS,
                            why=f"the text names the offender's address {value}",
                        ),
                    )

    def _score_local(self, local: str, hit: _Hit) -> None:
        if len(local) < 4 or local in ROLE_LOCALS:
            return
        v = self._values
        exact = {r.offender for r in v["local"].get(local, ())}
        weight = W_LOCAL_LONG if len(local) >= 8 else W_LOCAL if len(local) >= 5 else W_LOCAL_SHORT
        for off in sorted(exact):
            hit(
                off,
                Signal(
                    signal="local_part",
                    weight=weight,
                    why=f"the address's letters {local!r} are the offender's",
                ),
            )
        if len(local) < 6:
            return
        near: dict[str, None] = {}
        for key in (local, *deletions(local)):
            for r in (*v["local_del"].get(key, ()), *v["local"].get(key, ())):
                if r.offender not in exact:
                    near[r.offender] = None
        for off in near:
            hit(
                off,
                Signal(
                    signal="local_part",
                    weight=W_LOCAL_NEAR,
                    why=f"the address's letters {local!r} are one letter from the offender's",
                ),
            )

    def _score_names(self, features: Features, hit: _Hit) -> None:
        candidates: dict[str, None] = {}
        queries = [(q, name_keys(q)) for q in features.names]
        for _, keys in queries:
            for key in keys:
                for r in self._values["token"].get(key, ()):
                    candidates[r.offender] = None
        for off in candidates:
            best: Signal | None = None
            for query, qkeys in queries:
                for known, kkeys in self._names.get(off, ()):
                    if qkeys.isdisjoint(kkeys):
                        continue  # no token alike: compare_names would say None
                    s = compare_names(query, known)
                    if s is not None and (best is None or s.weight > best.weight):
                        best = s
            if best is None:
                continue
            hit(off, best)
            if features.lookalike and best.weight >= W_NAME_INITIAL:
                hit(
                    off,
                    Signal(
                        signal="lookalike",
                        weight=W_LOOKALIKE,
                        why="the name is written with look-alike letters",
                    ),
                )
