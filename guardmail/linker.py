"""One tenant's alias linker: what is known of its offenders, kept current, asked per item.

The scoring is pure (guardmail.core.aliases); this module holds its state:
- The index is built from the offenders' config entries and the features stored for their
  archived items (``alias_features`` rows), at start and on every reload, never from the blobs.
- ``learn`` runs when the pipeline archives an offender's item: its features are stored (one
  transaction) and added to the index in memory, so the next decision already knows them.
- ``suspect`` scores an item no rule matched (its text's signature is made only if another
  signal found an offender whose texts are known and who can reach the threshold with the
  text's strongest band: what is held is then what the full scoring says, core/aliases.py).
  Only when the best offender crosses the tenant's threshold does it read storage: whether a
  person dismissed this sender for that offender (``review dismiss``, maybe in another
  process), in which case the next offender is taken.
- A failure to learn (storage busy) is logged and costs only that item's features: the item is
  archived and acted on regardless. A failure to read the dismissals holds the item for review
  (the cautious side: nothing is blocked or warned on a suspicion).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from guardmail.config.aliases import AliasesConfig
from guardmail.config.offenders import GLOB_CHARS, OffenderConfig
from guardmail.config.settings import Settings
from guardmail.core.alias_body import body_text
from guardmail.core.alias_features import Features, address_key, extract, from_dict
from guardmail.core.alias_text import signature
from guardmail.core.aliases import AliasIndex, Suspicion
from guardmail.core.item import Channel, Identity, Item
from guardmail.errors import StateError
from guardmail.logs import event
from guardmail.storage.base import AliasFeaturesRow, Storage, StorageUnavailable
from guardmail.storage.sqlite import SQLiteStorage

DB_FILE = "guardmail.sqlite3"  # the tenant's database in its state_dir (daemon.tenant uses it)


def item_features(item: Item) -> Features:
    """An archived item's features, its text's signature included (what ``learn`` stores)."""
    return extract(item.raw, item.identities, text=True)


def sender_address(item: Item) -> str:
    """The From address (``address_key``) a review is about; "" if there is none."""
    for ident in item.identities:
        if ident.source == "From" and ident.address:
            return address_key(ident.address)
    return ""


def offender_entries(
    offenders: Sequence[OffenderConfig],
) -> list[tuple[str, list[str], list[str]]]:
    """(name, addresses, plain display names) of each offender, for ``AliasIndex.build``."""
    return [
        (o.name, list(o.addresses), [n for n in o.display_names if GLOB_CHARS.isdisjoint(n)])
        for o in offenders
    ]


def features_json(features: Features) -> str:
    return json.dumps(features.as_dict(), ensure_ascii=False, sort_keys=True)


def parse_features(text: str) -> Features:
    """Stored features; empty ones if the text is not what ``features_json`` wrote."""
    try:
        data = json.loads(text)
    except ValueError:
        return Features()
    return from_dict(data) if isinstance(data, dict) else Features()


class Linker:
    def __init__(
        self,
        *,
        storage: Storage,
        tenant: str,
        offenders: Sequence[OffenderConfig],
        config: AliasesConfig,
    ) -> None:
        self.storage = storage
        self.tenant = tenant
        self.config = config
        self._offenders: Sequence[OffenderConfig] = ()
        self._index: AliasIndex | None = None
        self.reload(offenders, config)

    @property
    def index(self) -> AliasIndex:
        """The offenders' index; built at first use when the linker is off (only ``guardmail
        explain`` asks then): an ISP's tenants mostly leave it off, and their indexes were
        ~2 KB a tenant kept for nothing, plus a read of the database each at start."""
        index = self._index
        if index is None:
            index = self._index = self._built(self._offenders)
        return index

    def reload(self, offenders: Sequence[OffenderConfig], config: AliasesConfig) -> None:
        """Rebuild the index from ``offenders`` and the stored features (start, reload; when
        off, at first use). The index is swapped in before the config that turns it on."""
        if config.enabled:
            index = self._built(offenders)
            self._offenders, self._index = offenders, index
            self.config = config
        else:
            self.config = config
            self._offenders, self._index = offenders, None

    def _built(self, offenders: Sequence[OffenderConfig]) -> AliasIndex:
        try:
            with self.storage.read() as tx:
                rows = tx.alias_features(self.tenant)
        except (StorageUnavailable, StateError) as exc:
            event("aliases.not_loaded", level=logging.WARNING, error=str(exc))
            rows = []
        entries = offender_entries(offenders)
        seen = [(r.offender, parse_features(r.features), _when(r.seen_at)) for r in rows]
        return AliasIndex.build(entries, seen)

    def learn(self, items: Sequence[tuple[Item, str, str, bool]], *, now: datetime) -> None:
        """Store and index the features of archived offender items: (item, offender, sha256,
        whether its From is the offender's). When a rule matched another identity (Reply-To,
        Sender ...), the From may be anyone's, so its address, local part and display names
        are not learned: an offender must not get an innocent sender held by writing them in."""
        if not items or not self.config.enabled:
            return
        learned = [
            (offender, _trusted(item_features(item), from_is_theirs), sha)
            for item, offender, sha, from_is_theirs in items
        ]
        try:
            with self.storage.transaction() as tx:
                for offender, features, sha in learned:
                    tx.put_alias_features(
                        AliasFeaturesRow(
                            tenant=self.tenant,
                            offender=offender,
                            sha256=sha,
                            seen_at=now.isoformat(),
                            features=features_json(features),
                        )
                    )
        except (StorageUnavailable, StateError) as exc:
            event("aliases.not_learned", level=logging.WARNING, error=str(exc))
        index = self.index
        for offender, features, _ in learned:
            if offender in index.offenders:
                index.add(offender, features, now)

    def suspect(self, item: Item, *, now: datetime) -> Suspicion | None:
        """The offender the item's sender is most likely an alias of, if that crosses the
        threshold and no person dismissed it; else None."""
        if not self.config.enabled or item.channel is not Channel.MAIL:
            return None
        # The text is read once, for its contacts and (if another signal asks) its signature.
        plain = body_text(item.raw) if self.index.wants_body else None
        found = self.index.suspects(
            extract(
                item.raw, item.identities, body=self.index.wants_body, learn=False, plain=plain
            ),
            now=now,
            text=lambda: signature(plain if plain is not None else body_text(item.raw)),
            threshold=self.config.review_threshold,
        )
        if not found:
            return None
        address = sender_address(item)
        try:
            with self.storage.read() as tx:
                dismissed = set(tx.not_alias_of(self.tenant, address)) if address else set()
        except (StorageUnavailable, StateError) as exc:
            event("aliases.dismissals_unread", level=logging.WARNING, error=str(exc))
            dismissed = set()
        return next((s for s in found if s.offender not in dismissed), None)


def explain_scores(
    settings: Settings, raw: bytes, identities: Sequence[Identity], *, now: datetime
) -> tuple[list[Suspicion], str]:
    """For ``guardmail explain``: every offender the message resembles, with the signals, and
    a note if the stored features could not be read (the config's entries are used then)."""
    storage: SQLiteStorage | None = None
    note = ""
    db = settings.state_dir / DB_FILE
    try:
        if db.exists():
            storage = SQLiteStorage(db)
    except (OSError, StateError, StorageUnavailable) as exc:
        note = f"the archived offenders' features are not read ({exc}); the config's entries are"
    try:
        if storage is None:
            index = AliasIndex.build(offender_entries(settings.offenders))
        else:
            index = Linker(
                storage=storage,
                tenant=settings.tenant,
                offenders=settings.offenders,
                config=settings.aliases,
            ).index
    finally:
        if storage is not None:
            storage.close()
    return index.score(extract(raw, identities, text=True), now=now), note


def _trusted(features: Features, from_is_theirs: bool) -> Features:
    if from_is_theirs:
        return features
    return replace(
        features,
        address="",
        addresses=(),
        local="",
        names=(),
        lookalike=False,
        signature_contacts=(),
        text=(),
    )


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
