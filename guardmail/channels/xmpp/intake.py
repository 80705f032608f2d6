"""The XMPP watcher's intake: received stanzas judged once each, the offenders' queued for the
vault's group commit, and acted on once durable (watch.py reads the socket and owns the
connection; this module decides nothing itself: the pipeline does).

Contracts (the watcher's, watch.py, held here):
- Nothing is archived twice as a new item: a server id handled this run is remembered (at most
  ``SEEN_LIMIT``); a copy of a stanza whose first copy is still in flight waits for that one to
  be durable, and one an earlier run archived (the journal holds its id) is not archived again.
- Archive before act: a stanza is acted on (by the pipeline, through ``actor``) only once its
  group is durable; while the vault fails it is retried every ``VAULT_RETRY_SECONDS``.
- One trip through the vault a message: nothing is done to a message (no receipt, marker or
  reply is sent), so its action entry (``describe``) is committed in its archived entry's own
  transaction (the pipeline's describe path, as the milter's): a crash leaves both or neither,
  and a message waits for one group commit, not for two in a row (issue 28). A subscription
  request is acted on (``unsubscribed`` sent) after its group, and its action entry journaled
  after that, in a group of its own.
- Order: stanzas are judged and queued for the vault in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from guardmail.channels.xmpp.client import Received
from guardmail.channels.xmpp.evidence import stanza_item
from guardmail.channels.xmpp.rooms import Sides
from guardmail.channels.xmpp.stanza import Incoming, Via, bare, fingerprint, read_stanza
from guardmail.channels.xmpp.sync import Blocklist, State
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.item import Item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import BatchActor, Pipeline
from guardmail.pipeline_batch import Outcome
from guardmail.storage.base import StorageUnavailable

VAULT_RETRY_SECONDS = 5.0
SEEN_LIMIT = 50_000  # server ids remembered this run (live and archive paths meet here)
STRANGER = "stranger (not in the roster)"
_STRANGER_RULES = RuleSet([OffenderRule(name=STRANGER, patterns=("*",), action=Action.QUARANTINE)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """Stanzas queued for the vault in one request (consecutive ones of one pipeline, in
    arrival order, with their server ids): the outcomes to await, one per stanza."""

    pipeline: Pipeline
    actor: BatchActor
    items: tuple[Item, ...]
    sids: tuple[str | None, ...]
    waiter: Awaitable[list[Outcome]]


class Intake:
    """One account's stanzas on their way to the pipeline (live and from the archive)."""

    def __init__(
        self,
        *,
        cfg: XmppSourceConfig,
        tenant: str,
        source: str,
        pipeline: Pipeline,
        state: State,
        sides: Sides,
        blocklist: Blocklist,
        actor: BatchActor,
        describe: Callable[[Item, Verdict], str],
        on_withheld: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.tenant = tenant
        self.source = source
        self.pipeline = pipeline
        self.state = state
        self.sides = sides
        self.blocklist = blocklist
        self.actor = actor  # subscription requests
        self.messages = _Unanswered(describe)  # every other stanza
        self.on_withheld = on_withheld  # an offender withheld from the blocklist was acted on
        self.strangers = (
            Pipeline(vault=pipeline.vault, rules=_STRANGER_RULES, clock=pipeline.clock)
            if cfg.strangers == "quarantine"
            else None
        )
        self.roster: set[str] = set()
        self.sid_trusted = False  # set per session from the server's disco#info
        self._seen: OrderedDict[str, tuple[str, str, str]] = OrderedDict()  # id -> fingerprint
        # Server ids queued for the vault and not durable yet: set once they are (a copy of
        # one from the archive must not let the archive cursor pass it before that).
        self._inflight: dict[str, asyncio.Event] = {}
        self._judging = asyncio.Lock()

    async def handle(self, got: Received) -> None:
        """Judge one stanza (live or from the archive) once; retry while the vault fails;
        return once it is archived and acted on."""
        pendings, inflight = await self.start([got])
        for pending in pendings:
            await self.finish(pending)
        for durable in inflight:
            await durable.wait()  # its live copy, queued earlier: the cursor waits for it

    async def start(self, batch: list[Received]) -> tuple[list[Pending], list[asyncio.Event]]:
        """Judge the stanzas (in arrival order) and queue the offenders' for the vault, in that
        order; what to await for each (none for a stanza not judged, seen before in this run,
        or archived in an earlier run), and the events of copies seen before and still in
        flight (set when those are durable)."""
        inflight: list[asyncio.Event] = []
        async with self._judging:
            fresh: list[tuple[Pipeline, Item, Incoming]] = []
            for got in batch:
                if await self.sides.take(got):
                    continue  # the person's own message, or a room's (rooms.py)
                incoming = read_stanza(
                    got.xml, account_bare=self.cfg.jid, trust_stanza_id=self.sid_trusted
                )
                if incoming is None or not incoming.judged:
                    continue
                sid = incoming.stanza_id
                if sid is not None and sid in self._seen:
                    if self._seen[sid] == fingerprint(incoming):
                        if sid in self._inflight:
                            inflight.append(self._inflight[sid])
                        continue  # already handled this run, live or from the archive
                    # Another message under a seen id: forged. Judge it under its position.
                    event(
                        "xmpp.stanza_id_reused",
                        level=logging.WARNING,
                        account=self.cfg.name,
                        id=sid,
                    )
                    incoming = replace(incoming, stanza_id=None)
                    sid = None
                item = self._item(got, incoming)
                fresh.append((self._pipeline_for(item, incoming), item, incoming))
                if sid is not None:
                    # Handled from now on: a copy arriving while this one is in flight is not
                    # archived again (this one is retried until it is).
                    self._seen[sid] = fingerprint(incoming)
                    self._inflight[sid] = asyncio.Event()
                    if len(self._seen) > SEEN_LIMIT:
                        self._seen.popitem(last=False)
            while True:
                try:
                    before = await self._archived_before(fresh)
                    break
                except (VaultUnavailable, StorageUnavailable) as exc:
                    await self._vault_failed(fresh[0][1], exc)
            # One request to the vault for each run of consecutive stanzas of one pipeline
            # (runs submitted in arrival order: the journal keeps that order), instead of one
            # per stanza: a batch shares its group commit, its actor call, its action entries'
            # commit and its warning step (issue 28).
            runs: list[tuple[Pipeline, BatchActor, list[Item], list[str | None]]] = []
            for (pipeline, item, incoming), earlier in zip(fresh, before, strict=True):
                if earlier:
                    self._durable(incoming.stanza_id)
                    continue
                actor = self.actor if incoming.via is Via.SUBSCRIBE else self.messages
                if not runs or runs[-1][0] is not pipeline or runs[-1][1] is not actor:
                    runs.append((pipeline, actor, [], []))
                runs[-1][2].append(item)
                runs[-1][3].append(incoming.stanza_id)
            return [
                Pending(
                    pipeline=pipeline,
                    actor=actor,
                    items=tuple(items),
                    sids=tuple(sids),
                    waiter=pipeline.submit_many(items, actor),
                )
                for pipeline, actor, items, sids in runs
            ], inflight

    def _durable(self, sid: str | None) -> None:
        durable = self._inflight.pop(sid, None) if sid is not None else None
        if durable is not None:
            durable.set()

    async def _archived_before(self, fresh: list[tuple[Pipeline, Item, Incoming]]) -> list[bool]:
        """For each stanza, whether an earlier run archived it already: the same server id may
        have been archived then (live, or from an archive page whose cursor was not saved
        yet); never a second item for it. One look at the journal for the whole batch."""
        asks = [
            (k, item.source_ref, fingerprint(incoming))
            for k, (pipeline, item, incoming) in enumerate(fresh)
            if incoming.stanza_id is not None and pipeline.judge(item).action is not Action.PASS
        ]
        found = [False] * len(fresh)
        if asks:
            looks = [(ref, same) for _, ref, same in asks]
            answers = await asyncio.to_thread(self.state.archived_before_many, looks)
            for (k, _, _), earlier in zip(asks, answers, strict=True):
                found[k] = earlier
        return found

    async def finish(self, pending: Pending) -> None:
        """Wait for the stanzas' group (then they are acted on, by the pipeline, each only
        after its receipt); while the vault fails, retry them (a group fails as a whole:
        nothing of it was journaled or acted on, and the vault finds their blobs in place)."""
        waiter = pending.waiter
        while True:
            try:
                outcomes = await waiter
                break
            except (VaultUnavailable, StorageUnavailable) as exc:
                await self._vault_failed(pending.items[0], exc)
            waiter = pending.pipeline.submit_many(pending.items, pending.actor)
        for sid in pending.sids:
            self._durable(sid)
        if any(
            o.receipt is not None and self.blocklist.withholds(o.verdict.offender) for o in outcomes
        ):
            self.on_withheld()  # the warning step ran: the offender may now be blocked

    async def _vault_failed(self, item: Item, exc: Exception) -> None:
        event(
            "xmpp.vault_unavailable",
            level=logging.WARNING,
            account=self.cfg.name,
            source_ref=item.source_ref,
            retry_in=VAULT_RETRY_SECONDS,
            error=str(exc),
        )
        await asyncio.sleep(VAULT_RETRY_SECONDS)

    def _pipeline_for(self, item: Item, incoming: Incoming) -> Pipeline:
        if self.strangers is None or incoming.via is Via.SUBSCRIBE:
            return self.pipeline
        sender = bare(incoming.sender).casefold()
        if "@" not in sender or sender in self.roster:
            return self.pipeline  # a contact, or a server or service (no local part)
        if self.pipeline.judge(item).action is not Action.PASS:
            return self.pipeline  # an offender is judged as one, stranger or not
        return self.strangers

    def _item(self, got: Received, incoming: Incoming) -> Item:
        return stanza_item(
            got, incoming, source=self.source, tenant=self.tenant, account=self.cfg.name
        )


class _Unanswered:
    """The pipeline's actor for messages: nothing is done to them, so the pipeline commits
    their action entries (``describe_many``) with their archived entries and never calls
    ``act_many``; the stanzas are marked durable once that commit is, before the HEAD witness
    after it (it may lag the journal, never lead it: guardmail.vault.group)."""

    wait_witness = False

    def __init__(self, describe: Callable[[Item, Verdict], str]) -> None:
        self.describe = describe

    def describe_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        return [self.describe(i, v) for i, v in zip(items, verdicts, strict=True)]

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        return self.describe_many(items, verdicts)  # not called: the pipeline describes
