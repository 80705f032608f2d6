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
from typing import TYPE_CHECKING, TypeAlias

from guardmail import logs
from guardmail.config.settings import LoadedConfig, load_config
from guardmail.control.server import ControlServer
from guardmail.daemon import lastgood
from guardmail.daemon.observe import Board
from guardmail.daemon.reload import ConfigWatcher
from guardmail.daemon.sdnotify import Notifier, watchdog_loop
from guardmail.daemon.supervise import describe, keep_running
from guardmail.daemon.tenant import Tenant, serve_tenant
from guardmail.daemon.tenants import MainRecipients, TenantDirectory
from guardmail.errors import ConfigError
from guardmail.logs import event
from guardmail.vault.store import Vault

if TYPE_CHECKING:
    # Imported where a source of the kind is configured, not here: each channel's library
    # (slixmpp, imapclient, aiosmtpd, watchdog) costs megabytes that a daemon without that
    # channel (an ISP's milter) would hold for nothing (tests/unit/test_daemon_imports.py).
    from guardmail.channels.imap.source import ImapSource
    from guardmail.channels.maildir import MaildirSource
    from guardmail.channels.smtp.filter import SmtpFilterSource
    from guardmail.channels.smtp.milter import MilterSource
    from guardmail.channels.xmpp.watch import XmppSource
    from guardmail.daemon.timestamper import Timestampers

STATUS_SECONDS = 5.0


class _Shutdown(Exception):
    """Raised inside the task group to stop every task."""


Source: TypeAlias = "MaildirSource | ImapSource | XmppSource | SmtpFilterSource | MilterSource"


class Daemon:
    def __init__(self, config: LoadedConfig, *, loaded_ns: int | None = None) -> None:
        """``loaded_ns``: when ``config`` was read (an edit after it is applied at start)."""
        self.config = config
        self.loaded_ns = loaded_ns
        self.started_with = config.settings  # state_dir and tenant: a reload does not move them
        self.tenant: Tenant = serve_tenant(config.settings)
        self.sources: list[Source] = []
        self.names: list[str] = []  # status's and the logs' name of each source, in order
        self.judged: list[MaildirSource | ImapSource] = []  # judged again when offenders change
        self.xmpp: list[XmppSource] = []
        sources = config.settings.sources
        if sources.maildir:
            from guardmail.channels.maildir import MaildirSource

        for m in sources.maildir:
            maildir = MaildirSource(
                path=m.path,
                account=m.name or str(m.path),
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                quarantine_folder=m.quarantine_folder,
                review_folder=config.settings.aliases.review_folder,
                rescan_seconds=m.rescan_seconds,
            )
            self._add(maildir.account, maildir)
            self.judged.append(maildir)
        if sources.imap:
            from guardmail.channels.imap.source import ImapSource

        for i in sources.imap:
            imap = ImapSource(
                cfg=i,
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                storage=self.tenant.storage,
                review_folder=config.settings.aliases.review_folder,
            )
            self._add(i.name, imap)
            self.judged.append(imap)
        if sources.xmpp:
            from guardmail.channels.xmpp.watch import XmppSource

        for x in sources.xmpp:
            xmpp = XmppSource(
                cfg=x,
                tenant=self.tenant.name,
                pipeline=self.tenant.pipeline,
                storage=self.tenant.storage,
                held=self.tenant.warner.held_server_blocks,
            )
            self._add(x.name, xmpp)
            self.xmpp.append(xmpp)
        self.smtp_filter: SmtpFilterSource | MilterSource | None = None
        self.tenant_dir: TenantDirectory | None = None
        if sources.smtp_filter is not None:
            # Loads tenants.d; a bad tenant file raises ConfigError (exit 2 with file:line).
            cfg = sources.smtp_filter
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
                from guardmail.channels.smtp.milter import MilterSource

                self.smtp_filter = MilterSource(cfg=cfg, tenants=tenants, fallback=main)
            else:
                from guardmail.channels.smtp import relayed as rc
                from guardmail.channels.smtp.filter import SmtpFilterSource
                from guardmail.storage.sqlite import SQLiteStorage

                # Copies relayed are remembered for retries in a database of their own (see
                # channels/smtp/relayed.py): writers without an fsync per commit (its
                # trade-off is there; one in a thread, one on the loop that never waits nor
                # checkpoints), and a reader that never waits, for the look-ups.
                path = config.settings.state_dir / rc.FILE
                own = tuple(
                    SQLiteStorage(path, **o) for o in (rc.WRITER, rc.READER, rc.LOOP_WRITER)
                )
                relayed = rc.RelayedCopies(
                    own[0],
                    self.tenant.name,
                    reader=own[1],
                    reader_never_waits=True,
                    loop_writer=own[2],
                    owned=own,
                )
                relayed.adopt(self.tenant.storage)
                self.smtp_filter = SmtpFilterSource(
                    cfg=cfg, tenants=tenants, relayed=relayed, fallback=main
                )
            self._add("smtp_filter", self.smtp_filter)
        self._stop = asyncio.Event()
        self.board = Board(
            vault_root=self.tenant.vault.root,
            tenant=self.tenant.name,
            metrics=config.settings.metrics is not None,  # read at start only, as in ``run``
        )
        # The local control socket client plugins and `guardmail report` talk to.
        self.control = ControlServer(
            state_dir=config.settings.state_dir,
            config=lambda: self.config,
            tenant=self.tenant,
            on_change=self._reload_notified,  # apply a reported offender at once
        )
        self.notifier = Notifier.from_env()
        stamp = config.settings.evidence.timestamp  # restart to change it, like the sources
        self.timestamps: Timestampers | None = None
        if stamp is not None:
            # rfc3161_client and cryptography's x509 (~11 MB) only for a daemon that stamps.
            from guardmail.daemon.timestamper import Timestampers

            self.timestamps = Timestampers(self._vaults, stamp)

    def _add(self, name: str, source: Source) -> None:
        self.sources.append(source)
        self.names.append(name)

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
        if rules_changed:  # re-reading every folder's headers is not free
            for judged in self.judged:
                judged.rejudge()  # existing mail, by the new rules, now
        for xmpp in self.xmpp:
            xmpp.apply_rules(self.tenant.pipeline.rules)  # server blocklist in sync
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
                for name, source in zip(self.names, self.sources, strict=True):
                    group.create_task(keep_running(name, source.run))
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

    async def main() -> None:
        await Daemon(config, loaded_ns=loaded_ns).run()

    asyncio.run(main())
    return 0
