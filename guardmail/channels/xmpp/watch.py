"""XMPP source: an account watched by guardmail's own client resource (slixmpp), offenders' stanzas
archived as the exact bytes the server delivered.

What reaches the watcher and is judged (see stanza.py): chat and normal messages, with or
without a body; Message Carbons (XEP-0280) of what reaches the person's other clients (the inner
message's sender is judged); the person's own messages (sent carbons, archive results) and
group-chat messages of the rooms in ``rooms``, archived only (rooms.py); MUC private messages,
with the real JID where the room reveals it;
presence subscription requests; and, at every (re)connect and every ``mam_sync_seconds``, the
server archive (MAM, XEP-0313) after the last archive id handled, which holds what arrived while
guardmail was away and what carbons do not copy (Prosody does not copy MUC private messages).

What "act" means for XMPP (the stanza has already been delivered by the server; nothing can be
taken back from the person's other clients):
- The archive is the essential part. quarantine: the stanza is archived and never acknowledged
  in any way: guardmail sends no receipt, chat marker, reply or error, and forwards nothing. An
  offender's subscription request is denied (``unsubscribed``); nobody else's is touched, and
  roster auto-authorisation is off.
- block: the same, and with ``server_block: true`` the block offenders' exact JIDs and domains are
  kept in the server blocklist (XEP-0191), added and removed as the offender list changes. An
  offender still owed the warning over XMPP (``held``, from the Warner) is added only once the
  ledger has a row for them: after their first blocked item (this source resyncs right after
  it) or a ``guardmail warn`` (found at the next archive sync).
- The person's other clients still receive the stanzas unless ``server_block`` is on. With it,
  the server drops the offender's stanzas before its own archive (and before carbons): later
  attempts are no longer seen by guardmail, nor documented anywhere.
- ``strangers: quarantine`` archives messages from JIDs not in the roster (and not offenders)
  the same way; the verdict comes from a second Pipeline on the same vault whose one rule is the
  offender "stranger (not in the roster)", so that the pipeline stays the only path to the vault.

Evidence: ``Item.raw`` is the top-level stanza exactly as the socket delivered it (byte-exact tee,
client.py); ``meta`` keeps the stream header (namespace context), the server certificate's
SHA-256, the stream offset, the message id and server stanza-id (XEP-0359). For archive results
the bytes are the ``<message><result>`` wrapper as delivered by the archive query: the forwarded
message inside is the server's archived copy, not the original delivery (``meta`` says so).

Modules of this package: tee (byte-exact slicing), client (slixmpp with the tee), stanza (who
sent what, pure), session (login, requests, teardown), intake (stanzas judged, archived and
acted on, once each), sync (archive cursor, blocklist), blocklist (blocklist plan, pure), queries
(the requests as XML), send (the warning as one message).

Contracts:
- Nothing is archived twice as a new item: the same message has one server id live, as a carbon
  and in the archive (source_ref ``xmpp:<account>:<stanza-id>``); ids handled this run are
  remembered, and an archive result whose id the journal already holds is not archived again.
  Without a server id the ref is ``xmpp:<account>:<stream id>:<offset>``, and the vault's dedupe
  scope (``xmpp:<account>``) keeps identical bytes once.
- The archive cursor advances only after a page's results were handled (judged, or archived and
  acted on); a vault failure is retried and the cursor waits.
- One connection per account; after any drop: backoff with jitter, then resync the blocklist and
  catch up from the archive. A refused login or certificate backs off slowly (REFUSED).
"""

from __future__ import annotations

import asyncio
import logging
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from slixmpp.stanza import Iq
from slixmpp.xmlstream.xmlstream import NotConnectedError

from guardmail.channels.xmpp import queries
from guardmail.channels.xmpp.client import (
    PRIORITY,
    Received,
    StreamContext,
    WatchClient,
    shared_context,
)
from guardmail.channels.xmpp.evidence import where_now
from guardmail.channels.xmpp.intake import Intake
from guardmail.channels.xmpp.rooms import Sides
from guardmail.channels.xmpp.session import Lost, Refused, login, request, teardown
from guardmail.channels.xmpp.stanza import (
    MESSAGE,
    NS_SID,
    PRESENCE,
    Via,
    bare,
)
from guardmail.channels.xmpp.sync import ArchiveReader, Blocklist, State
from guardmail.channels.xmpp.tee import Slice
from guardmail.config.secrets import read_secret
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.backoff import NETWORK, REFUSED, STABLE_SECONDS
from guardmail.core.item import Item
from guardmail.core.rules import Action, RuleSet, Verdict
from guardmail.errors import ConnectFailure, SecretError, VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.base import Storage

INBOX_HIGH, INBOX_LOW = 20_000, 2_000  # stop reading the socket above HIGH, resume below LOW
IN_FLIGHT = 2_000  # offender stanzas queued for the vault and not yet acted on, at most
DRAIN_BATCH = 500  # live stanzas judged together (one look at the journal for all of them)


class XmppSource:
    """One XMPP account. ``run()`` until cancelled; ``apply_rules()`` after a reload."""

    def __init__(
        self,
        *,
        cfg: XmppSourceConfig,
        tenant: str,
        pipeline: Pipeline,
        storage: Storage,
        held: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self.cfg = cfg
        self.tenant = tenant
        self.pipeline = pipeline
        self.source = f"xmpp:{cfg.name}"
        self.state = State(storage=storage, tenant=tenant, source=self.source)
        self.archive = ArchiveReader(cfg=cfg, state=self.state)
        self._inbox: asyncio.Queue[Received] = asyncio.Queue()
        self._paused = False
        self._client: WatchClient | None = None
        self._connections = 0
        self._roster_ready = asyncio.Event()
        self.blocklist = Blocklist(cfg=cfg, state=self.state, rules=pipeline.rules, held=held)
        self._rules_changed = asyncio.Event()
        # The person's own messages and the rooms they are in (rooms.py): archive only.
        self.sides = Sides(
            cfg=cfg,
            tenant=tenant,
            source=self.source,
            pipeline=pipeline,
            storage=storage,
            clock=pipeline.clock,
        )
        # Judging, the vault and acting (intake.py): live stanzas and the archive's alike.
        self.intake = Intake(
            cfg=cfg,
            tenant=tenant,
            source=self.source,
            pipeline=pipeline,
            state=self.state,
            sides=self.sides,
            blocklist=self.blocklist,
            actor=self,
            describe=self.describe,
            on_withheld=self._rules_changed.set,
        )

    # --- the daemon's side -----------------------------------------------------------------

    def apply_rules(self, rules: RuleSet) -> None:
        """The offender list changed (reload): resync the server blocklist (now, or at the next
        login). Judging needs nothing here: the daemon swaps the pipeline's rules."""
        self.blocklist.rules = rules
        self._rules_changed.set()

    async def run(self) -> None:
        try:  # actions a crash kept from the journal (evidence.where_now), before any judging
            await self.pipeline.reconcile(partial(where_now, source=self.source))
        except VaultUnavailable as exc:
            event(
                "xmpp.reconcile_failed", level=logging.ERROR, account=self.cfg.name, error=str(exc)
            )
        async with asyncio.TaskGroup() as group:
            group.create_task(self._drain())
            group.create_task(self._connect_forever())

    # --- connections -----------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            refused = False
            began = loop.time()
            try:
                reason = await self._session()
                if loop.time() - began > STABLE_SECONDS:
                    failures = 0  # else keep backing off: e.g. another client kicking ours
                name, level = "xmpp.disconnected", logging.WARNING
            except ConnectFailure as exc:
                reason, refused = exc.reason, exc.refused
                name, level = exc.event, logging.ERROR
            wait = (REFUSED if refused else NETWORK).delay(failures, rand=random.random())
            failures += 1
            event(name, level=level, account=self.cfg.name, error=reason, retry_in=round(wait, 1))
            await asyncio.sleep(wait)

    async def _session(self) -> str:
        """One connection: log in, set up, catch up, then watch until it drops (the reason)."""
        cfg = self.cfg
        try:
            password = await asyncio.to_thread(
                read_secret, file=cfg.password_file, command=cfg.password_command
            )
        except SecretError as exc:
            raise ConnectFailure(
                event="xmpp.secret_unreadable", reason=str(exc), refused=True
            ) from None
        self._connections += 1
        client = WatchClient(
            jid=f"{cfg.jid}/{cfg.resource}",
            password=password,
            tls=cfg.tls,
            ssl_context=shared_context(cfg.ca_file),
            on_stanza=self._on_stanza,
            connection=self._connections,
        )
        del password
        try:
            await login(client, cfg, on_roster_push=self._on_roster_push)
            self._client = client
            event(
                "xmpp.connected",
                account=cfg.name,
                jid=str(client.boundjid),
                tls=client.encrypted,
                cert_sha256=client.cert_sha256 or None,
            )
            return await self._watch(client)
        finally:
            self._client = None
            teardown(client)

    async def _watch(self, client: WatchClient) -> str:
        ended = asyncio.Event()
        client.add_event_handler("disconnected", lambda _: ended.set())
        if client.transport is None:
            ended.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._maintain(client))
                group.create_task(self._keepalive(client))
                await ended.wait()
                raise Lost("connection closed")
        except* (Lost, Refused, NotConnectedError) as group:
            client.disconnect_reason = client.disconnect_reason or str(group.exceptions[0])
        if client.tee_failure:
            event(
                "xmpp.tee_failed",
                level=logging.ERROR,
                account=self.cfg.name,
                error=client.tee_failure,
            )
            return client.tee_failure
        return str(client.disconnect_reason or "connection closed")

    async def _maintain(self, client: WatchClient) -> None:
        """Set up the session, catch up, then resync on reloads and read the archive again."""
        # XEP-0359: a stanza-id is trusted only where the server says it adds (and strips) them.
        try:
            info = await self._request(client, queries.disco_info(client, bare(self.cfg.jid)))
            self.intake.sid_trusted = NS_SID in queries.disco_features(info.xml)
        except Refused:
            self.intake.sid_trusted = False
        event("xmpp.stanza_ids", account=self.cfg.name, trusted=self.intake.sid_trusted)
        roster = await self._request(client, queries.roster_get(client))
        self.intake.roster = {bare(j).casefold() for j, _ in queries.roster_items(roster.xml)}
        self._roster_ready.set()
        try:
            await self._request(client, queries.carbons_enable(client))
        except Refused as exc:
            event(
                "xmpp.carbons_unavailable",
                level=logging.WARNING,
                account=self.cfg.name,
                error=str(exc),
            )
        if self.cfg.send_presence:
            client.send_presence(ppriority=PRIORITY)
        self.sides.join(client)
        self._rules_changed.clear()
        await self.blocklist.sync(client)
        await self.archive.catch_up(client, self.intake.handle, routine=False)
        while True:
            try:
                async with asyncio.timeout(self.cfg.mam_sync_seconds):
                    await self._rules_changed.wait()
            except TimeoutError:
                await self.archive.catch_up(client, self.intake.handle, routine=True)
                if not self.blocklist.withheld:
                    continue
                # A warning may have been sent meanwhile by `guardmail warn`.
            self._rules_changed.clear()
            await self.blocklist.sync(client)

    async def _keepalive(self, client: WatchClient) -> None:
        while True:
            await asyncio.sleep(self.cfg.ping_seconds)
            try:
                await self._request(client, queries.ping(client, client.boundjid.domain))
            except Refused:
                pass  # any answer shows the stream is alive

    async def _request(self, client: WatchClient, iq: Iq) -> Iq:
        return await request(client, iq, seconds=self.cfg.timeout_seconds)

    # --- stanzas in --------------------------------------------------------------------------

    def _on_stanza(self, xml: ET.Element, piece: Slice, context: StreamContext) -> None:
        """Called by the client for every stanza, in stream order, inside data_received."""
        if xml.tag not in (MESSAGE, PRESENCE):
            return
        got = Received(xml=xml, piece=piece, context=context, received_at=datetime.now(UTC))
        if self.archive.offer(got):
            return
        self._inbox.put_nowait(got)
        client = self._client
        if not self._paused and self._inbox.qsize() > INBOX_HIGH and client is not None:
            if client.transport is not None:
                client.transport.pause_reading()
                self._paused = True

    def _on_roster_push(self, iq: Iq) -> None:
        if iq["type"] != "set":
            return
        for jid, subscription in queries.roster_items(iq.xml):
            key = bare(jid).casefold()
            if subscription == "remove":
                self.intake.roster.discard(key)
            else:
                self.intake.roster.add(key)

    async def _drain(self) -> None:
        """Judge live stanzas in arrival order (forever, across reconnections). The stanzas
        waiting are taken together (at most DRAIN_BATCH) and handed to the vault in one
        request (intake.py), acted on by a task once that is durable, so that everything that
        has arrived shares one group commit (at most IN_FLIGHT stanzas queued at a time)."""
        slots = asyncio.Semaphore(IN_FLIGHT)
        async with asyncio.TaskGroup() as tasks:
            while True:
                batch = [await self._inbox.get()]
                while len(batch) < DRAIN_BATCH and not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                await self._roster_ready.wait()
                if self._paused and self._inbox.qsize() < INBOX_LOW:
                    client = self._client
                    if client is not None and client.transport is not None:
                        client.transport.resume_reading()
                    self._paused = False
                # A copy in flight: nothing to wait for here.
                pendings, _ = await self.intake.start(batch)
                for pending in pendings:
                    for _ in pending.items:
                        await slots.acquire()
                    tasks.create_task(self.intake.finish(pending)).add_done_callback(
                        partial(_release, slots, len(pending.items))
                    )

    # --- the pipeline's Actor ----------------------------------------------------------------

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        """The pipeline's BatchActor: each stanza of a batch acted on, in order (called only
        once the batch is durable in the vault)."""
        return [await self.act(i, v) for i, v in zip(items, verdicts, strict=True)]

    async def act(self, item: Item, verdict: Verdict) -> str:
        meta = dict(item.meta)
        if meta["via"] == str(Via.SUBSCRIBE):
            client = self._client
            if client is None or client.transport is None:
                return (
                    "subscription request left pending: disconnected (the server repeats it "
                    "at the next login, where it is denied)"
                )
            client.send_presence(pto=bare(meta["from"]), ptype="unsubscribed")
            return "subscription request denied (unsubscribed sent); nothing else answered"
        return self.describe(item, verdict)

    def describe(self, item: Item, verdict: Verdict) -> str:
        """The action entry of a message (live, carbon or from the archive; never a
        subscription request): nothing is done to it, so this is known before its archive is
        durable, and intake.py has the pipeline commit it in the archive's own transaction."""
        meta = dict(item.meta)
        done = "archived; not acknowledged (no receipt, marker or reply sent)"
        if meta["via"] == str(Via.MAM):
            done = "archived from the server archive; not acknowledged"
        if verdict.action is Action.BLOCK and self.cfg.server_block:
            done += "; " + self.blocklist.describe(verdict.offender, meta["from"])
        return done


def _release(slots: asyncio.Semaphore, n: int, _: object) -> None:
    for _ in range(n):
        slots.release()
