"""A tenant's state opened from settings: storage, vault, rules and pipeline.

The conversion from settings (pydantic, the config edge) to the pure core's OffenderRule lives
here, so core/ never imports settings.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guardmail.config.settings import Settings
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.errors import StateError, VaultUnavailable
from guardmail.linker import DB_FILE as DB_FILE  # one name; explain opens it without a tenant
from guardmail.linker import Linker
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.base import StorageUnavailable
from guardmail.storage.files import private_dir, remove_stale_temps, tighten
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.dkimlimits import Limits
from guardmail.vault.head import HEAD_FILE
from guardmail.vault.keyfetch import DnsResolver
from guardmail.vault.receipts import ReceiptChecker
from guardmail.vault.store import Vault
from guardmail.warner import Warner

# At a tenant's close, the checks still queued get this long; the rest are dropped (logged).
RECEIPTS_CLOSE_SECONDS = 2.0


def build_rules(settings: Settings) -> RuleSet:
    return RuleSet(
        [
            OffenderRule(
                name=o.name,
                addresses=tuple(o.addresses),
                patterns=tuple(o.patterns),
                domains=tuple(o.domains),
                display_names=tuple(o.display_names),
                jids=tuple(o.jids),
                action=Action(o.action),
            )
            for o in settings.offenders
        ]
    )


def see_offenders(warner: Warner) -> None:
    """Fix the ids of offenders seen for the first time (guardmail.core.offender_ids), so that
    a rename made later keeps them; a busy database defers it to the warner's first need."""
    try:
        warner.ids()
    except StorageUnavailable as exc:
        event("offender_ids.deferred", level=logging.WARNING, error=str(exc))


def seal_log(vault: Vault, *, now: datetime | None = None) -> None:
    """At a daemon's start: sign a tree head over entries no head covers (a journal from before
    the Merkle log is sealed here) and make or check the key file; the key is loaded only to
    sign (``Vault.seal(start=True)``). A failure is logged, not fatal: the next append seals
    them too."""
    try:
        vault.seal(now=now or datetime.now(UTC), start=True)
    except VaultUnavailable as exc:
        event("vault.unsealed", level=logging.WARNING, vault=str(vault.root), error=str(exc))


def serve_tenant(settings: Settings, *, storage: SQLiteStorage | None = None) -> Tenant:
    """``open_tenant`` for a daemon (not for commands that only read): the log sealed, a new
    vault's GENESIS HEAD made soon after (``Preparer``), and the receipt checks a crash lost
    queued again."""
    tenant = open_tenant(settings, storage=storage)
    seal_log(tenant.vault)
    if not (tenant.vault.root / HEAD_FILE).exists():
        PREPARER.add(tenant.vault)
    if tenant.pipeline.receipts is not None:  # checks a crash lost, queued again
        tenant.pipeline.receipts.catch_up()
    return tenant


SETTLE_SECONDS = 1.0  # no tenant opened this long: the start is over, new vaults are prepared


class Preparer:
    """One thread that makes new vaults' GENESIS HEADs (``Vault.prepare``) after the daemon's
    start, one vault at a time: a tenant's first offender item then does not wait for those 2
    fsyncs (a milter's client waits for the answer), and the start does not either (1,000 new
    tenants: 8.3 s to listening, 17.1 s when made before it; bench/README.md, milter3). It
    begins once no vault was added for ``SETTLE_SECONDS`` (the tenants are open: its
    transactions would hold up theirs), each a short transaction like a commit's; the thread
    ends when the queue is empty."""

    def __init__(self) -> None:
        self._vaults: deque[Vault] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._added = 0.0  # time.monotonic() of the last add

    def add(self, vault: Vault) -> None:
        with self._lock:
            self._vaults.append(vault)
            self._added = time.monotonic()
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="vault-prepare", daemon=True).start()

    def _run(self) -> None:
        while (quiet := time.monotonic() - self._added) < SETTLE_SECONDS:
            time.sleep(SETTLE_SECONDS - quiet)
        while True:
            with self._lock:
                if not self._vaults:
                    self._running = False
                    return
                vault = self._vaults.popleft()
            try:
                vault.prepare()  # logs its own failures (a closed storage at a stop too)
            except Exception:  # a bug: the first archive writes the HEAD as before
                logging.getLogger("guardmail").exception("vault.unprepared")

    def wait(self, timeout: float) -> bool:
        """Whether the queue was emptied within ``timeout`` seconds (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return True
            time.sleep(0.01)
        return False


PREPARER = Preparer()


def vault_dir(state_dir: Path, tenant: str) -> Path:
    return state_dir / "vault" / tenant


@dataclass(slots=True)
class Tenant:
    name: str
    storage: SQLiteStorage
    vault: Vault
    pipeline: Pipeline
    warner: Warner
    linker: Linker
    owns_storage: bool = True  # False: shared (open_tenant's ``storage``), closed by its owner

    def apply(self, settings: Settings) -> None:
        """Take new offenders and warning settings (hot reload); the swaps are atomic."""
        self.pipeline.rules = build_rules(settings)
        self.pipeline.own = settings.impersonation.own_names(settings.evidence.authserv_id)
        self.linker.reload(settings.offenders, settings.aliases)
        self.warner.settings = settings
        see_offenders(self.warner)
        if self.pipeline.receipts is not None:
            self.pipeline.receipts.authserv_id = settings.evidence.authserv_id

    def close(self, *, deadline: float | None = None) -> None:
        """``deadline`` (time.monotonic): when the receipt checks still queued are dropped; one
        for all tenants closed together, since they share the workers (a tenant's own
        ``RECEIPTS_CLOSE_SECONDS`` each would add up over an ISP's thousand)."""
        if self.pipeline.receipts is not None:
            left = RECEIPTS_CLOSE_SECONDS if deadline is None else deadline - time.monotonic()
            self.pipeline.receipts.close(timeout=max(0.0, left))
        if self.owns_storage:
            self.storage.close()


def receipt_checker(
    settings: Settings, storage: SQLiteStorage, vault: Vault
) -> ReceiptChecker | None:
    """The tenant's DKIM/ARC check at receipt, unless ``evidence.dkim`` is off; a check queued
    past its memory bound reads the item back from ``vault``."""
    ev = settings.evidence
    if not ev.dkim:
        return None
    return ReceiptChecker(
        storage=storage,
        tenant=settings.tenant,
        resolver=shared_resolver(tuple(ev.nameservers)),
        authserv_id=ev.authserv_id,
        limits=shared_limits(ev.dns_timeout, ev.dns_budget),
        load=vault.blobs.get,
    )


# One resolver and one Limits for every tenant that configures the same (an ISP's thousand
# tenants all take the defaults): ~0.3 KB a tenant otherwise. Neither holds a tenant's data:
# the resolver is configured once and a lookup's answer goes back to its caller only; Limits
# is frozen. Bounded by the distinct values in the config files.
@functools.cache
def shared_resolver(nameservers: tuple[str, ...]) -> DnsResolver:
    return DnsResolver(nameservers)


@functools.cache
def shared_limits(lookup_seconds: float, dns_budget: float) -> Limits:
    return Limits(lookup_seconds=lookup_seconds, dns_budget=dns_budget)


def open_storage(state: Path) -> SQLiteStorage:
    """The state directory made private (0700, created or tightened with a warning event), temp
    files left by a writer that died removed, and its database (0600) opened."""
    try:
        if state.is_dir():
            tighten(state)
        else:
            private_dir(state)
    except NotADirectoryError as exc:
        raise StateError(f"{exc.filename}: {exc.strerror}") from None
    remove_stale_temps(state)
    return SQLiteStorage(state / DB_FILE)


def open_tenant(settings: Settings, *, storage: SQLiteStorage | None = None) -> Tenant:
    """Open (creating if needed) the tenant's state under ``settings.state_dir``.

    The state directory and the tenant's vault directories end up 0700 (created so, or tightened
    with a warning event), the database 0600, and temp files left by a writer that died are
    removed (``guardmail.storage.files``). StateError or PermissionError if they cannot be used.
    ``storage``: the database of ``settings.state_dir`` already opened (``open_storage``) and
    shared with other tenants (their rows are keyed by tenant; one transaction at a time); the
    tenant then does not close it.
    """
    owns = storage is None
    if storage is None:
        storage = open_storage(settings.state_dir)
    vault = Vault(vault_dir(settings.state_dir, settings.tenant), storage, settings.tenant)
    try:
        vault.open()
    except BaseException:
        if owns:
            storage.close()
        raise
    warner = Warner(settings=settings, vault=vault, storage=storage)
    see_offenders(warner)
    linker = Linker(
        storage=storage,
        tenant=settings.tenant,
        offenders=settings.offenders,
        config=settings.aliases,
    )
    pipeline = Pipeline(
        vault=vault,
        rules=build_rules(settings),
        after_block=warner.on_block,
        linker=linker,
        own=settings.impersonation.own_names(settings.evidence.authserv_id),
        receipts=receipt_checker(settings, storage, vault),
    )
    return Tenant(
        name=settings.tenant,
        storage=storage,
        vault=vault,
        pipeline=pipeline,
        warner=warner,
        linker=linker,
        owns_storage=owns,
    )
