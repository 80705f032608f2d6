"""The live tenants of ``tenants.d`` (files read by ``config.tenants``), opened and routed to.

Contracts:
- ``TenantDirectory`` opens one ``Tenant`` (open_tenant) per file: its own rules, vault directory
  and rows keyed by its name, on one database connection shared by all of them (one transaction
  at a time; a connection each cost ~160 KB, 160 MB at 1,000 tenants). ``reload()`` swaps in a
  new directory atomically (router and tenants together) or, if any file is wrong, logs every
  issue and keeps the last good one. Tenants removed from the directory stop receiving mail at
  once; their state is closed at exit.
- ``watch()`` reloads after every change made once its observer runs, and, once at its start,
  after a change made since the first load began (found by the files' and the directory's
  change times, which ``cp -p`` or ``touch -d`` cannot set back): a directory untouched since
  is not read a second time (1,000 tenant files: 0.3-1.7 s of CPU to read, ~4 ms to check).
- ``route`` gives the SMTP filter what it needs of a recipient's tenant (``Routed``: its name,
  quarantine mailbox and pipeline), so the channel never imports the daemon.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from guardmail.config.settings import Settings
from guardmail.config.tenants import (
    SUFFIXES,
    LoadedTenants,
    Router,
    TenantConfig,
    load_tenants,
)
from guardmail.daemon.reload import COARSE_CLOCK_NS, DEBOUNCE
from guardmail.daemon.tenant import RECEIPTS_CLOSE_SECONDS, Tenant, open_storage, serve_tenant
from guardmail.errors import ConfigError
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault


@dataclass(frozen=True, slots=True, kw_only=True)
class Routed:
    """A recipient's tenant, as seen by the message being handled."""

    tenant: Tenant
    name: str
    quarantine_mailbox: str | None
    # What a reload compares (``file_digest``): the validated TenantConfig is not kept, ~1 KB
    # of pydantic instance a tenant that nothing reads after the load (issue 27).
    digest: bytes

    @property
    def pipeline(self) -> Pipeline:
        return self.tenant.pipeline


def file_digest(config: TenantConfig) -> bytes:
    """Equal for two loads of a tenant file exactly when their validated settings are (every
    field is in the JSON dump; the config models have no secret, excluded or private field)."""
    return hashlib.sha256(config.model_dump_json().encode("utf-8")).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class MainRecipients:
    """The main config's tenant as the SMTP filter's and the milter's fallback: recipients of
    no tenants.d file are judged by the main config's offenders (no quarantine mailbox: their
    copies archived and not delivered, removed or discarded)."""

    tenant: Tenant

    @property
    def name(self) -> str:
        return self.tenant.name

    @property
    def quarantine_mailbox(self) -> str | None:
        return None

    @property
    def pipeline(self) -> Pipeline:
        return self.tenant.pipeline


@dataclass(frozen=True, slots=True, kw_only=True)
class _Snapshot:
    router: Router
    tenants: Mapping[str, Routed]


@dataclass(slots=True, kw_only=True)
class TenantDirectory:
    """The open tenants of ``tenants.d`` and the router to them; see the module contracts."""

    directory: Path
    state_dir: Path
    delimiter: str = "+"
    reserved: frozenset[str] = frozenset()
    base: Path = field(default_factory=Path.cwd)
    # None: serve_tenant on one database connection shared by every tenant of the directory.
    opener: Callable[[Settings], Tenant] | None = None
    # When a load begins, in ns since the epoch (tests move it to age the files they wrote).
    clock: Callable[[], int] = time.time_ns
    _loaded_ns: int = field(init=False, default=0)
    _storage: SQLiteStorage | None = field(init=False, default=None)
    _snapshot: _Snapshot = field(init=False)
    _open: dict[str, Tenant] = field(init=False, default_factory=dict)
    _retired: list[Tenant] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        """Load and open every tenant; ConfigError propagates (a start with a bad file fails)."""
        self._loaded_ns = self.clock()  # before reading: an edit during the read counts as later
        loaded = load_tenants(self.directory, reserved=self.reserved, base=self.base)
        self._snapshot = _Snapshot(router=Router.build(()), tenants={})
        self._apply(loaded)
        event("tenants.loaded", directory=str(self.directory), tenants=len(loaded.tenants))

    def route(self, recipient: str) -> Routed | None:
        snapshot = self._snapshot  # one read: router and tenants always belong together
        name = snapshot.router.route(recipient)
        return snapshot.tenants.get(name) if name is not None else None

    def tenant(self, name: str) -> Routed | None:
        """The open tenant called ``name`` (None if tenants.d has none now)."""
        return self._snapshot.tenants.get(name)

    @property
    def router(self) -> Router:
        return self._snapshot.router

    @property
    def vaults(self) -> list[Vault]:
        """The open tenants' vaults (for the daemon's timestamps)."""
        return [r.tenant.vault for r in self._snapshot.tenants.values()]

    @property
    def names(self) -> list[str]:
        return sorted(self._snapshot.tenants)

    def reload(self) -> bool:
        """Read the directory again; apply it if valid, else log why and keep the last good one."""
        return self._install(self._load())

    def _load(self) -> LoadedTenants | None:
        """The directory as it is now, or None (issues logged). Reads only: any thread."""
        try:
            return load_tenants(self.directory, reserved=self.reserved, base=self.base)
        except ConfigError as exc:
            for issue in exc.issues:
                event("tenants.reload_rejected", level=logging.ERROR, issue=str(issue))
            return None
        except Exception as exc:  # a bug in reading; the daemon must outlive it (keep the last)
            error = f"{type(exc).__name__}: {exc}"
            event("tenants.reload_failed", level=logging.ERROR, error=error)
            return None

    def _changed_since_load(self) -> bool:
        """Whether the directory or a tenant file in it changed since the first load began.

        Change times (ctime), not modification times: a file copied in with its old mtime kept
        (``cp -p``, ``rsync -t``, ``tar x``) still gets a new ctime. Stats only: any thread."""
        since = self._loaded_ns - COARSE_CLOCK_NS
        try:
            if os.stat(self.base / self.directory).st_ctime_ns >= since:
                return True  # a file added, removed or renamed
            with os.scandir(self.base / self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(SUFFIXES) and entry.stat().st_ctime_ns >= since:
                        return True
        except OSError:
            return True  # cannot tell: read it (the load says what is wrong)
        return False

    def _install(self, loaded: LoadedTenants | None, *, quiet: bool = False) -> bool:
        """Apply ``loaded`` (None: rejected); ``quiet``: say nothing if nothing changed."""
        if loaded is None:
            return False
        before = self._snapshot.tenants
        if quiet and tuple(map(file_digest, loaded.tenants)) == tuple(
            r.digest for r in before.values()
        ):
            return True
        self._apply(loaded)
        after = self._snapshot.tenants
        event(
            "tenants.reloaded",
            tenants=len(after),
            added=",".join(sorted(set(after) - set(before))),
            removed=",".join(sorted(set(before) - set(after))),
            changed=",".join(
                sorted(n for n in set(before) & set(after) if before[n].digest != after[n].digest)
            ),
        )
        return True

    def _apply(self, loaded: LoadedTenants) -> None:
        old = self._snapshot.tenants
        routed: dict[str, Routed] = {}
        for config in loaded.tenants:
            digest = file_digest(config)
            tenant = self._open.get(config.name)
            if tenant is None:
                tenant = self._opened(config.settings(state_dir=self.state_dir))
                self._open[config.name] = tenant
            elif old[config.name].digest != digest:
                tenant.apply(config.settings(state_dir=self.state_dir))
            routed[config.name] = Routed(
                tenant=tenant,
                name=config.name,
                quarantine_mailbox=config.quarantine_mailbox,
                digest=digest,
            )
        for name in set(self._open) - set(routed):
            # A message may still be on its way through this tenant: close it at exit only.
            self._retired.append(self._open.pop(name))
        router = Router.build(loaded.tenants, delimiter=self.delimiter)
        self._snapshot = _Snapshot(router=router, tenants=routed)

    def _opened(self, settings: Settings) -> Tenant:
        if self.opener is not None:
            return self.opener(settings)
        if self._storage is None:
            self._storage = open_storage(self.state_dir)
        return serve_tenant(settings, storage=self._storage)

    def close(self) -> None:
        deadline = time.monotonic() + RECEIPTS_CLOSE_SECONDS  # one wait for all: shared workers
        for tenant in [*self._open.values(), *self._retired]:
            tenant.close(deadline=deadline)
        self._open.clear()
        self._retired.clear()
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    async def watch(self) -> None:
        """Reload shortly after a tenant file is written, created, renamed or removed; forever."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        observer = Observer()

        def poke() -> None:
            loop.call_soon_threadsafe(changed.set)

        handler = _Changes(poke)
        observer.schedule(handler, str(self.directory), recursive=False)
        observer.start()  # watching from here on (inotify is set up before start returns)
        try:
            # A change between the first load and now raised no event: look for one, read the
            # directory again only if there was one.
            if await asyncio.to_thread(self._changed_since_load):
                self._install(await asyncio.to_thread(self._load), quiet=True)
            event("tenants.watching", directory=str(self.directory))
            while True:
                await changed.wait()
                while True:  # debounce: one save, one reload
                    changed.clear()
                    try:
                        async with asyncio.timeout(DEBOUNCE):  # not wait_for: test_no_wait_for
                            await changed.wait()
                    except TimeoutError:
                        break
                # Parsing a large directory takes a while: not in the loop that serves mail.
                self._install(await asyncio.to_thread(self._load))
        finally:
            observer.stop()
            await asyncio.to_thread(observer.join)


class _Changes(FileSystemEventHandler):
    def __init__(self, poke: Callable[[], None]) -> None:
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or event.is_directory:
            return
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(os.fsdecode(p).endswith(SUFFIXES) for p in paths if p):
            self._poke()
