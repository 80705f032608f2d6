"""``guardmail run``: wires the tenant, its sources and the pipeline under one supervisor.

Every long-lived task runs in one ``asyncio.TaskGroup``. Each source runs under
``supervise.keep_running``: a source that fails (a storage hiccup in an IMAP folder thread, a
Maildir path gone) is logged at error level, shown down in ``status`` and the metrics, and
restarted with backoff, while the other sources, tenants and the control socket run on. A
failure of the daemon's own tasks still ends it loudly (systemd restarts it). SIGTERM and SIGINT
stop cleanly; SIGHUP reloads the configuration, and a configuration that does not load is logged
while the last good one keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from guardmail import logs
from guardmail.channels.imap.source import ImapSource
from guardmail.channels.maildir import MaildirSource
from guardmail.channels.smtp.filter import SmtpFilterSource
from guardmail.channels.smtp.milter import MilterSource
from guardmail.channels.smtp.relayed import RelayedCopies
from guardmail.channels.xmpp.client import small_tls_reads
from guardmail.channels.xmpp.watch import XmppSource
from guardmail.config.settings import LoadedConfig, load_config
from guardmail.control.server import ControlServer
from guardmail.daemon import lastgood
from guardmail.daemon.observe import Board
from guardmail.daemon.reload import ConfigWatcher
from guardmail.daemon.sdnotify import Notifier, watchdog_loop
from guardmail.daemon.supervise import describe, keep_running
from guardmail.daemon.tenant import Tenant, serve_tenant
from guardmail.daemon.tenants import MainRecipients, TenantDirectory
from guardmail.daemon.timestamper import Timestampers
from guardmail.errors import ConfigError
from guardmail.logs import event
from guardmail.vault.store import Vault

STATUS_SECONDS = 5.0


class _Shutdown(Exception):
    """Raised inside the task group to stop every task."""


Source = MaildirSource | ImapSource | XmppSource | SmtpFilterSource | MilterSource


def source_name(source: Source) -> str:
    """The name status and logs give a source (its account, as the sources' own events do)."""
    if isinstance(source, MaildirSource):
        return source.account
    if isinstance(source, SmtpFilterSource | MilterSource):
        return "smtp_filter"
    return source.cfg.name


class Daemon:
    def __init__(self, config: LoadedConfig, *, loaded_ns: int | None = None) -> None:
        """``loaded_ns``: when ``config`` was read (an edit after it is applied at start)."""
        self.config = config
        self.loaded_ns = loaded_ns
        self.started_with = config.settings  # state_dir and tenant: a reload does not move them
        self.tenant: Tenant = serve_tenant(config.settings)
        self.sources: list[Source] = [
            MaildirSource(
                path=m.path,
                account=m.name or str(m.path),
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                quarantine_folder=m.quarantine_folder,
                review_folder=config.settings.aliases.review_folder,
                rescan_seconds=m.rescan_seconds,
            )
            for m in config.settings.sources.maildir
        ]
        self.sources += [
            ImapSource(
                cfg=i,
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                storage=self.tenant.storage,
                review_folder=config.settings.aliases.review_folder,
            )
            for i in config.settings.sources.imap
        ]
        self.sources += [
            XmppSource(
                cfg=x,
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                storage=self.tenant.storage,
                held=self.tenant.warner.held_server_blocks,
            )
            for x in config.settings.sources.xmpp
        ]
        self.smtp_filter: SmtpFilterSource | MilterSource | None = None
        self.tenant_dir: TenantDirectory | None = None
        if config.settings.sources.smtp_filter is not None:
            # Loads tenants.d; a bad tenant file raises ConfigError (exit 2 with file:line).
            cfg = config.settings.sources.smtp_filter
            tenants = TenantDirectory(
                directory=cfg.tenants_dir,
                state_dir=config.settings.state_dir,
                delimiter=cfg.recipient_delimiter,
                reserved=frozenset({self.tenant.name}),
            )
            self.tenant_dir = tenants
            # The main config's own offenders protect every recipient of no tenant.
            main = MainRecipients(tenant=self.tenant)
            if cfg.mode == "milter":
                self.smtp_filter = MilterSource(cfg=cfg, tenants=tenants, fallback=main)
            else:
                # Copies relayed are remembered in the daemon's own database, for retries.
                relayed = RelayedCopies(self.tenant.storage, self.tenant.name)
                self.smtp_filter = SmtpFilterSource(
                    cfg=cfg, tenants=tenants, relayed=relayed, fallback=main
                )
            self.sources.append(self.smtp_filter)
        self._stop = asyncio.Event()
        self.board = Board(vault_root=self.tenant.vault.root, tenant=self.tenant.name)
        # The local control socket client plugins and `guardmail report` talk to.
        self.control = ControlServer(
            state_dir=config.settings.state_dir,
            config=lambda: self.config,
            tenant=self.tenant,
            on_change=self._reload_notified,  # apply a reported offender at once
        )
        self.notifier = Notifier.from_env()
        stamp = config.settings.evidence.timestamp  # restart to change it, like the sources
        self.timestamps = Timestampers(self._vaults, stamp) if stamp is not None else None

    def _vaults(self) -> list[Vault]:
        """Every tenant's vault: the main one, then tenants.d's as they are now."""
        return [self.tenant.vault, *(self.tenant_dir.vaults if self.tenant_dir else [])]

    def reload(self) -> bool:
        """Load the config again; apply it if valid, else keep the last good one.

        Returns True when the new configuration was applied.
        """
        if self.smtp_filter is not None:
            self.smtp_filter.reload_tenants()  # tenants.d does not depend on the main file
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            for issue in exc.issues:
                event("config.reload_rejected", level=logging.ERROR, issue=str(issue))
            return False
        except Exception as exc:  # a bug in reading; the daemon must outlive it (keep the last)
            # Class and place only: the message may quote the file's content (a secret).
            event("config.reload_failed", level=logging.ERROR, error=describe(exc))
            return False
        old = self.config.settings
        if (new.settings.sources, new.settings.state_dir, new.settings.tenant) != (
            old.sources,
            old.state_dir,
            old.tenant,
        ):
            event(
                "config.restart_needed",
                level=logging.WARNING,
                detail="sources, state_dir or tenant changed; restart to apply those",
            )
        self.tenant.apply(new.settings)
        self.config = new
        self._record_last_good()
        rules_changed = new.settings.offenders != old.offenders
        for source in self.sources:
            if isinstance(source, MaildirSource | ImapSource):
                if rules_changed:  # re-reading every folder's headers is not free
                    source.rejudge()  # existing mail, by the new rules, now
            elif isinstance(source, XmppSource):
                source.apply_rules(self.tenant.pipeline.rules)  # server blocklist in sync
        event("config.reloaded", offenders=len(new.settings.offenders))
        return True

    def _record_last_good(self) -> None:
        """Keep the configuration now running for read-only commands (see daemon.lastgood)."""
        try:
            lastgood.record(self.config, running=self.started_with, now=datetime.now(UTC))
        except OSError as exc:
            event("config.last_good_unwritable", level=logging.WARNING, error=str(exc))

    def _status(self) -> str:
        return f"{len(self.config.settings.offenders)} offenders, {len(self.sources)} sources"

    def _reload_notified(self) -> bool:
        """reload(), told to systemd: RELOADING=1, then READY=1 whatever the outcome."""
        self.notifier.reloading()
        applied = self.reload()
        self.notifier.ready(self._status() if applied else "reload rejected; last good config runs")
        return applied

    def stop(self) -> None:
        self.notifier.stopping()
        self._stop.set()

    async def _publish_status(self) -> None:
        """status.json for `guardmail status`, refreshed every STATUS_SECONDS."""
        while True:
            try:
                await asyncio.to_thread(self.board.write, self.config.settings.state_dir)
            except OSError as exc:
                event("status.unwritable", level=logging.WARNING, error=str(exc))
            await asyncio.sleep(STATUS_SECONDS)

    async def _wait_for_stop(self) -> None:
        await self._stop.wait()
        raise _Shutdown

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        logs.add_listener(self.board)
        metrics = self.config.settings.metrics
        if metrics is not None:
            self.board.serve(metrics.host, metrics.port)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_notified)
        self._record_last_good()
        event(
            "daemon.started",
            config=str(self.config.path),
            tenant=self.tenant.name,
            offenders=len(self.config.settings.offenders),
            sources=len(self.sources),
        )
        try:
            async with asyncio.TaskGroup() as group:
                if (interval := self.notifier.watchdog_interval()) is not None:
                    group.create_task(watchdog_loop(self.notifier, interval))
                for source in self.sources:
                    group.create_task(keep_running(source_name(source), source.run))
                watcher = ConfigWatcher(
                    lambda: self.config, self._reload_notified, loaded_ns=self.loaded_ns
                )
                group.create_task(watcher.run())
                group.create_task(self._publish_status())
                group.create_task(self.control.run())
                if self.timestamps is not None:
                    group.create_task(keep_running("timestamps", self.timestamps.run))
                group.create_task(self._wait_for_stop())
                self.notifier.ready(self._status())
        except* _Shutdown:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            logs.remove_listener(self.board)
            self.board.close()
            if self.smtp_filter is not None:
                self.smtp_filter.close()
            self.tenant.close()
        event("daemon.stopped")


def run(config_path: Path) -> int:
    """Run the daemon in the foreground until SIGTERM. ConfigError propagates to the CLI."""
    loaded_ns = time.time_ns()
    config = load_config(config_path)
    logs.setup(fmt=config.settings.log_format, level=config.settings.log_level)
    small_tls_reads()  # 16 KiB instead of 256 KiB per XMPP connection (bench/xmpp_accounts.py)

    async def main() -> None:
        await Daemon(config, loaded_ns=loaded_ns).run()

    asyncio.run(main())
    return 0
