"""What the XMPP watcher keeps in step with the server: its place in the server archive (MAM,
XEP-0313) and the offenders in the server blocklist (XEP-0191).

Contracts:
- The archive cursor (the last archive id whose page was handled, and its time) advances only
  after every result of a page was handled: judged, or archived and acted on. Live stanzas never
  move it: the archive also holds what never reached the watcher live (Prosody does not copy MUC
  private messages as carbons), and those may be older than the last live message.
- A cursor the archive no longer holds (expired) is replaced by its time (``start``).
- Results of the watcher's own query reach ``offer`` with their bytes, in stream order, before
  the query's answer; nothing else is taken.
- The blocklist holds what blocklist.plan says; which entries guardmail adds is recorded before
  they are added, so that it never mistakes them later for the person's own (not even after a
  crash right after the server took them; an entry recorded but never added is added at the next
  sync, or forgotten there when no longer wanted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from guardmail import faults
from guardmail.channels.xmpp import blocklist, queries
from guardmail.channels.xmpp.client import Received, WatchClient
from guardmail.channels.xmpp.session import Refused, request
from guardmail.channels.xmpp.stanza import MESSAGE, NS_DELAY, NS_FORWARD, NS_MAM, bare
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.rules import RuleSet
from guardmail.logs import event
from guardmail.storage.base import JournalRow, Storage, StorageUnavailable

MAM_PAGE = 50
MAM_CURSOR, BLOCKLIST = "mam", "blocklist"


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """The watcher's rows in storage (``Transaction.cursor``): opaque text under a name."""

    storage: Storage
    tenant: str
    source: str

    def load(self, name: str) -> str | None:
        with self.storage.transaction() as tx:
            return tx.cursor(self.tenant, self.source, name)

    def save(self, name: str, value: str) -> None:
        with self.storage.transaction() as tx:
            tx.set_cursor(self.tenant, self.source, name, value)

    def archived_before_many(self, asks: Sequence[tuple[str, tuple[str, str, str]]]) -> list[bool]:
        """For each (source_ref, ``stanza.fingerprint``): whether that message was archived under
        that source_ref. One read snapshot for them all: one storage lock and one transaction a
        batch of stanzas, not one a stanza (issue 28)."""
        with self.storage.read() as tx:
            rows = [tx.find_archived_ref(self.tenant, ref) for ref, _ in asks]
        return [_same(row, same) for row, (_, same) in zip(rows, asks, strict=True)]


def _same(row: JournalRow | None, same: tuple[str, str, str]) -> bool:
    if row is None:
        return False
    try:
        entry = json.loads(row.body)
        meta = entry.get("meta") or {}
        seen = (bare(str(meta.get("from", ""))).casefold(), str(meta.get("id", "")))
        return seen + (str(entry.get("subject", "")),) == same
    except (ValueError, AttributeError, TypeError):
        return False  # unreadable: archive again rather than lose the message


class ArchiveReader:
    """Pages through the account's archive after the cursor; see the module contracts."""

    def __init__(self, *, cfg: XmppSourceConfig, state: State) -> None:
        self.cfg = cfg
        self.state = state
        self._query: str | None = None
        self._page: list[Received] = []

    def offer(self, got: Received) -> bool:
        """Take ``got`` if it is a result of the query in progress (called in stream order)."""
        query = self._query
        if query is None or got.xml.tag != MESSAGE:
            return False
        result = got.xml.find(f"{{{NS_MAM}}}result")
        sender = got.xml.get("from")
        own = sender is None or bare(sender).casefold() == self.cfg.jid.casefold()
        if result is None or not own or result.get("queryid") != query:
            return False
        self._page.append(got)
        return True

    async def catch_up(
        self,
        client: WatchClient,
        handle: Callable[[Received], Awaitable[None]],
        *,
        routine: bool,
    ) -> None:
        """Hand every archived result after the cursor to ``handle``, oldest first.

        ``routine``: a periodic sync, logged only when it found something.
        """
        try:
            await self._read(client, handle, routine=routine)
        except StorageUnavailable as exc:
            # The cursor could not be read or saved: the next sync starts where it stands.
            event(
                "xmpp.storage_unavailable",
                level=logging.WARNING,
                account=self.cfg.name,
                error=str(exc),
            )

    async def _read(
        self,
        client: WatchClient,
        handle: Callable[[Received], Awaitable[None]],
        *,
        routine: bool,
    ) -> None:
        saved = await asyncio.to_thread(self.state.load, MAM_CURSOR)
        cursor: dict[str, str] = json.loads(saved) if saved else {}
        after, start = cursor.get("id"), None
        results = 0
        while True:
            self._query, self._page = uuid.uuid4().hex[:16], []
            iq = queries.mam_query(
                client, query_id=self._query, max_items=MAM_PAGE, after=after, start=start
            )
            try:
                answer = await request(client, iq, seconds=self.cfg.timeout_seconds)
            except Refused as exc:
                if exc.condition == "item-not-found" and after is not None and cursor.get("stamp"):
                    # The archive no longer holds our last id (expired): go on by its time.
                    event(
                        "xmpp.mam_cursor_lost",
                        level=logging.WARNING,
                        account=self.cfg.name,
                        after=after,
                        start=cursor["stamp"],
                    )
                    after, start = None, cursor["stamp"]
                    continue
                event(
                    "xmpp.mam_unavailable",
                    level=logging.WARNING,
                    account=self.cfg.name,
                    error=str(exc),
                )
                return
            finally:
                page, self._query, self._page = self._page, None, []
            complete, last = queries.mam_fin(answer.xml)
            for got in page:
                await handle(got)
            results += len(page)
            last = last or (_result_attr(page[-1].xml, "id") if page else None)
            if last is not None and last != after:
                stamp = _stamp(page[-1].xml) if page else None
                cursor = {"id": last, "stamp": stamp or cursor.get("stamp", "")}
                await asyncio.to_thread(self.state.save, MAM_CURSOR, json.dumps(cursor))
                faults.reached("xmpp.cursor")
            if complete or not page or last is None or last == after:
                break
            after, start = last, None
        event(
            "xmpp.caught_up",
            level=logging.DEBUG if routine and not results else logging.INFO,
            account=self.cfg.name,
            results=results,
            cursor=cursor.get("id"),
        )


def _result_attr(xml: ET.Element, name: str) -> str | None:
    result = xml.find(f"{{{NS_MAM}}}result")
    return result.get(name) if result is not None else None


def _stamp(xml: ET.Element) -> str | None:
    delay = xml.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay")
    return delay.get("stamp") if delay is not None else None


class Blocklist:
    """The server blocklist kept in step with the offender list (``rules``, swapped on reload).

    ``held`` (the Warner's) names the offenders still owed the warning over XMPP: they stay out
    of the blocklist until the ledger has a row for them. Read at every sync; if storage cannot
    say, every offender counts as held (nothing more is blocked until it can).
    """

    def __init__(
        self,
        *,
        cfg: XmppSourceConfig,
        state: State,
        rules: RuleSet,
        held: Callable[[], frozenset[str]],
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.rules = rules
        self.held = held
        self.withheld: frozenset[str] = frozenset()

    def withholds(self, offender: str | None) -> bool:
        return offender is not None and offender.casefold() in self.withheld

    def describe(self, offender: str | None, sender: str) -> str:
        """For the action journal: where a blocked sender stands with the server blocklist."""
        if self.withholds(offender):
            return "kept out of the server blocklist until the warning is sent"
        listed = blocklist.wanted(self.rules, held=self.withheld)
        jid = blocklist.canonical(sender) or ""
        if jid in listed or jid.rpartition("@")[2] in listed:
            return "the sender is in the server blocklist"
        return (
            "the sender is not in the server blocklist (matched by pattern or alias; only "
            "listed jids and domains are blocked there)"
        )

    async def sync(self, client: WatchClient) -> None:
        """Make the server blocklist hold what the offender list asks for (blocklist.py)."""
        cfg = self.cfg
        if cfg.server_block:
            self.withheld = await asyncio.to_thread(self._held)
        timeout = cfg.timeout_seconds
        try:
            wanted = blocklist.wanted(self.rules, held=self.withheld) if cfg.server_block else set()
            saved = await asyncio.to_thread(self.state.load, BLOCKLIST)
            managed = set(json.loads(saved)) if saved else set()
            if not wanted and not managed and not self.withheld:
                return
            answer = await request(client, queries.blocklist_get(client), seconds=timeout)
            items = queries.blocklist_items(answer.xml)
            current = {c for j in items if (c := blocklist.canonical(j))}
            todo = blocklist.plan(wanted=wanted, current=current, managed=managed)
            if todo.add:
                adding = json.dumps(sorted(managed | todo.add))
                await asyncio.to_thread(self.state.save, BLOCKLIST, adding)
                iq = queries.blocklist_change(client, "block", todo.add)
                await request(client, iq, seconds=timeout)
                faults.reached("xmpp.blocklisted")
            if todo.remove:
                iq = queries.blocklist_change(client, "unblock", todo.remove)
                await request(client, iq, seconds=timeout)
                faults.reached("xmpp.blocklisted")
            await asyncio.to_thread(self.state.save, BLOCKLIST, json.dumps(sorted(todo.managed)))
        except (Refused, StorageUnavailable) as exc:
            event("xmpp.blocklist_failed", level=logging.ERROR, account=cfg.name, error=str(exc))
            return
        event(
            "xmpp.blocklist_synced",
            account=cfg.name,
            added=len(todo.add),
            removed=len(todo.remove),
            held=len(todo.managed),
            withheld_until_warned=",".join(sorted(self.withheld)) or None,
        )

    def _held(self) -> frozenset[str]:
        try:
            return self.held()
        except StorageUnavailable:
            return frozenset(o.name.casefold() for o in self.rules.offenders)
