"""Suspected aliases: how likely a new sender is one of the offenders, and why.

``AliasIndex`` holds what is known of each offender: the addresses and display names of their
config entry, and the features (core/alias_features.py) of every message of theirs the vault
archived. ``score`` compares a new message's features with it and returns, for each offender it
resembles, a ``Suspicion``: a likelihood and the signals behind it, each ``(signal, weight,
why)``.

The signals, their weights and the likelihood they add up to are in core/alias_weights.py.

The name forms are compared in core/alias_names.py, the text's contacts read in
core/alias_body.py, every other feature in core/alias_features.py; the signals of local parts,
names, contacts and timing are found in core/alias_signals.py.

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
from guardmail.core.alias_names import Signal, deletions, name_keys
from guardmail.core.alias_signals import (
    ROLE_LOCALS,
    Hit,
    Ref,
    score_contacts,
    score_local,
    score_names,
    timing,
)
from guardmail.core.alias_text import (
    MAX_PROFILE,
    MAX_TEXT_CANDIDATES,
    Signature,
    band_weight,
    profile_similarity,
)
from guardmail.core.alias_weights import (
    IP_WINDOW,
    W_CLIENT,
    W_CLIENT_WITH_IP,
    W_DKIM,
    W_IP,
    W_IP_OLD,
    W_LINKED,
    W_MSGID,
    W_TEXT_MAX,
    likelihood,
)

MAX_REFS = 64
MAX_NAMES_PER_OFFENDER = 32
MAX_OFFENDERS_SCORED = 16
_MARGIN = 1e-9  # log-odds: a bound a rounding error cannot put below the full sum


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspicion:
    """How likely the sender is ``offender`` (0..1), and the signals that say so."""

    offender: str
    likelihood: float
    signals: tuple[Signal, ...]


class AliasIndex:
    """What is known of each offender, indexed by feature value.

    ``add`` only ever replaces a key's tuple of references with a longer copy (never mutates
    one), so a reader in another thread sees the old or the new tuple, both consistent.
    """

    def __init__(self) -> None:
        self._values: dict[str, dict[str, tuple[Ref, ...]]] = {
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
        # Each offender's ``MAX_PROFILE`` newest text signatures, their sets (in the same
        # order) and the union of those sets (a text's values are looked up in it once, then
        # each set is intersected with only those found: ``profile_similarity``): one new
        # tuple on every add, so a reader in another thread never sees a signature without its
        # set, nor a union without every signature.
        self._texts: dict[
            str, tuple[tuple[Signature, ...], tuple[frozenset[int], ...], frozenset[int]]
        ] = {}

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

    def _put(self, kind: str, value: str, ref: Ref) -> None:
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
        ref = Ref(offender, seen_at)
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
                    self._put("token", key, Ref(offender, None))
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
            old_sigs, old_sets, _ = self._texts.get(offender, ((), (), frozenset()))
            sigs = (*old_sigs, features.text)[-MAX_PROFILE:]
            sets = (*old_sets, frozenset(features.text))[-MAX_PROFILE:]
            self._texts[offender] = (sigs, sets, frozenset().union(*sets))
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
        it is set). With ``decisive`` (the threshold a decision applies), the text is left
        unread when no offender it would be compared with reaches ``decisive`` even with the
        text's strongest band: every suspicion at or above ``decisive`` is then what the full
        scoring gives, likelihood, signals and order (the text only adds to an offender, at
        most ``W_TEXT_MAX``); below it they may lack the text (``explain`` passes none)."""
        return _suspicions(self._found(features, now, text, decisive), None)

    def suspects(
        self,
        features: Features,
        *,
        now: datetime,
        text: Callable[[], Signature] | None,
        threshold: float,
    ) -> list[Suspicion]:
        """What a decision asks: ``score(..., decisive=threshold)``'s suspicions at or above
        ``threshold``, the same ones in the same order; the others are not built (most of the
        offenders a common first name finds, each a sorted tuple of signals)."""
        return _suspicions(self._found(features, now, text, threshold), threshold)

    def _found(
        self,
        features: Features,
        now: datetime,
        text: Callable[[], Signature] | None,
        decisive: float | None,
    ) -> dict[str, dict[str, Signal]]:
        """Each offender's signals, strongest of each kind (see ``score``)."""
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
        score_local(features.local, hit, by_local=v["local"], by_deletion=v["local_del"])
        score_names(features, hit, by_token=v["token"], names=self._names)
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
                # Beside the offender's IP the client adds nothing: on real mail the senders
                # who share an IP (a relay, a bulk platform) share its client too.
                with_ip = "origin_ip" in found.get(r.offender, {})
                hit(
                    r.offender,
                    Signal(
                        signal="client",
                        weight=W_CLIENT_WITH_IP if with_ip else W_CLIENT,
                        why=f"written with {features.client!r}, as the offender's mail"
                        + (" (from their IP too: no more evidence than the IP)" if with_ip else ""),
                    ),
                )
        score_contacts(features.contacts, hit, by_contact=v["contact"], by_address=v["address"])
        if 0 <= features.hour < 24:
            for off in found:  # timing never makes a candidate: it only adds to other signals
                signal = timing(self._hours.get(off), features.hour)
                if signal is not None:
                    hit(off, signal)
        if found and (text is not None or features.text):
            self._score_text(found, features.text or text, hit, decisive)
        return found

    def _score_text(
        self,
        found: dict[str, dict[str, Signal]],
        text: Signature | Callable[[], Signature] | None,
        hit: Hit,
        decisive: float | None,
    ) -> None:
        """The text signal for the most likely ``MAX_TEXT_CANDIDATES`` offenders found whose
        texts are known: bounded work whatever the message, never a candidate of its own.
        With ``decisive``: nothing at all if none of them can reach it (see ``score``)."""
        known = [
            (sum(s.weight for s in signals.values()), o)
            for o, signals in found.items()
            if o in self._texts
        ]
        if not known or text is None:
            return
        known.sort(key=lambda x: (-x[0], x[1]))
        candidates = known[:MAX_TEXT_CANDIDATES]
        # The same candidates as without ``decisive`` (no filter before the cut: a filtered
        # list would give the text to a fifth offender the full scoring never compares). The
        # bound's margin covers the float sums' order (the full one adds the text last).
        if decisive is not None and all(
            likelihood((w, W_TEXT_MAX + _MARGIN)) < decisive for w, _ in candidates
        ):
            return
        query = text() if callable(text) else text
        if not query:
            return
        for _, off in candidates:
            profile, sets, union = self._texts[off]
            value = profile_similarity(query, profile, sets, union)
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


def _suspicions(found: dict[str, dict[str, Signal]], threshold: float | None) -> list[Suspicion]:
    """The ``MAX_OFFENDERS_SCORED`` most likely of ``found``; with ``threshold``, only those at
    or above it (all of them precede the others in this order: the same list, cut sooner)."""
    out: list[Suspicion] = []
    for name, signals in found.items():
        p = likelihood(s.weight for s in signals.values())
        if threshold is None or p >= threshold:
            out.append(
                Suspicion(
                    offender=name,
                    likelihood=p,
                    signals=tuple(sorted(signals.values(), key=lambda s: -s.weight)),
                )
            )
    out.sort(key=lambda s: (-s.likelihood, s.offender))
    return out[:MAX_OFFENDERS_SCORED]
