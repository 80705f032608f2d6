"""Reading an XMPP account's server archive (MAM, XEP-0313) for ``guardmail import``.

Contracts:
- One login with its own resource (``RESOURCE_SUFFIX`` after the configured one), so that a
  running daemon's session is not replaced; no presence is sent, nothing is acknowledged, the
  archive is only read (XEP-0313 queries change nothing on the server).
- Every result from ``since`` on, oldest first, in pages of ``MAM_PAGE``: each reaches the
  importer with the exact bytes the server delivered (the client's byte-exact tee), as the
  live watcher's archive results do; ``evidence.stanza_item`` says what they are.
- An item's key is the archive's result id: stable across queries, where the bytes are not (the
  wrapper carries the query's id), so a resumed import skips what it recorded.
- The protocol runs in its own thread and event loop; items cross over through a bounded queue
  (at most ``QUEUE`` waiting), so a large archive is never held at once; a stanza over the
  importer's bound is not kept (``Found.raw`` None).
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from guardmail.channels.xmpp import queries
from guardmail.channels.xmpp.client import Received, StreamContext, WatchClient, shared_context
from guardmail.channels.xmpp.evidence import stanza_item
from guardmail.channels.xmpp.session import Lost, Refused, login, request, teardown
from guardmail.channels.xmpp.stanza import MESSAGE, NS_MAM, read_stanza
from guardmail.channels.xmpp.tee import Slice
from guardmail.config.secrets import read_secret
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.item import Channel
from guardmail.errors import ConnectFailure, SecretError
from guardmail.imports import MAX_ITEM_BYTES, Found, UnreadableSource

MAM_PAGE = 100
QUEUE = 500
RESOURCE_SUFFIX = "-import"
_DONE = object()


class MamArchive:
    """The server archive of a configured XMPP source, from ``since`` (a UTC time) on."""

    kind = "xmpp"

    def __init__(
        self, cfg: XmppSourceConfig, since: datetime, *, max_item: int = MAX_ITEM_BYTES
    ) -> None:
        self.cfg = cfg
        self.since = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.name = f"{cfg.name} (server archive)"
        self.max_item = max_item
        self.total: int | None = None
        self._query: str | None = None
        self._page: list[Received] = []

    def items(self) -> Iterator[Found]:
        out: queue.Queue[object] = queue.Queue(maxsize=QUEUE)
        stop = threading.Event()
        thread = threading.Thread(
            target=lambda: asyncio.run(self._produce(out, stop)), name="mam-import", daemon=True
        )
        thread.start()
        try:
            while True:
                got = out.get()
                if got is _DONE:
                    return
                if isinstance(got, UnreadableSource):
                    raise got
                assert isinstance(got, Found)
                yield got
        finally:
            stop.set()
            while thread.is_alive():  # let the producer see ``stop`` past a full queue
                try:
                    out.get(timeout=0.1)
                except queue.Empty:
                    pass

    def _on_stanza(self, xml: ET.Element, piece: Slice, context: StreamContext) -> None:
        if self._query is None or xml.tag != MESSAGE:
            return
        result = xml.find(f"{{{NS_MAM}}}result")
        if result is None or result.get("queryid") != self._query:
            return
        self._page.append(
            Received(xml=xml, piece=piece, context=context, received_at=datetime.now(UTC))
        )

    async def _produce(self, out: queue.Queue[object], stop: threading.Event) -> None:
        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        cfg = self.cfg
        try:
            password = read_secret(file=cfg.password_file, command=cfg.password_command)
        except SecretError as exc:
            put(UnreadableSource(f"XMPP source {cfg.name!r}: {exc}"))
            return
        client = WatchClient(
            jid=f"{cfg.jid}/{cfg.resource}{RESOURCE_SUFFIX}",
            password=password,
            tls=cfg.tls,
            ssl_context=shared_context(cfg.ca_file),
            on_stanza=self._on_stanza,
            connection=1,
        )
        del password
        try:
            await login(client, cfg, on_roster_push=lambda _: None)
            await self._pages(client, put, stop)
            put(_DONE)
        except ConnectFailure as exc:
            put(UnreadableSource(f"XMPP source {cfg.name!r}: {exc.reason}"))
        except (Lost, Refused) as exc:
            put(UnreadableSource(f"XMPP source {cfg.name!r}: the archive query failed: {exc}"))
        finally:
            teardown(client)

    async def _pages(
        self, client: WatchClient, put: Callable[[object], None], stop: threading.Event
    ) -> None:
        account = self.cfg.jid
        after: str | None = None
        position = 0
        while not stop.is_set():
            self._query, self._page = uuid.uuid4().hex[:16], []
            iq = queries.mam_query(
                client,
                query_id=self._query,
                max_items=MAM_PAGE,
                after=after,
                start=self.since if after is None else None,
            )
            try:
                answer = await request(client, iq, seconds=self.cfg.timeout_seconds)
            finally:
                page, self._query, self._page = self._page, None, []
            complete, last = queries.mam_fin(answer.xml)
            for got in page:
                position += len(got.piece.raw)
                found = self._found(got, account, position)
                if found is not None:
                    put(found)
            if complete or not page or last is None or last == after:
                return
            after = last

    def _found(self, got: Received, account: str, position: int) -> Found | None:
        """The result as an item to import; None for one that is no message to judge."""
        result = got.xml.find(f"{{{NS_MAM}}}result")
        result_id = result.get("id", "") if result is not None else ""
        raw = got.piece.raw
        sha = hashlib.sha256(raw).hexdigest()
        key = f"mam:{result_id}" if result_id else f"sha256:{sha}"
        incoming = read_stanza(got.xml, account_bare=account)
        if incoming is None:
            return None
        if len(raw) > self.max_item:
            return Found(key=key, raw=None, size=len(raw), sha256=sha, position=position)
        item = stanza_item(
            got, incoming, source=f"xmpp:{self.cfg.name}", tenant="", account=self.cfg.name
        )
        return Found(
            key=key,
            raw=raw,
            size=len(raw),
            sha256=sha,
            position=position,
            channel=Channel.XMPP,
            meta=item.meta,
            identities=item.identities,
            summary=item.summary,
        )
