"""Both sides and group chats for the XMPP watcher: the person's own messages to an offender,
and offenders' messages in the rooms (MUC, XEP-0045) the person is in, with the room's context.
Archive only (guardmail.kept): nothing is answered, dropped or warned.

- The person's side: a sent carbon or an archive result of the person's own message (sides.py)
  whose recipient the rules match is archived, byte-exact as the socket delivered it, with
  ``direction: outgoing``. Its reference is ``<source>:sent:<recipient>:<message id>``, so the
  live carbon and the later archive result of the same message are one item: a reference the
  journal already holds is not archived again.
- Group chats: the watcher joins each configured room (``rooms``; multi-session nick: with the
  person's own nick the server makes it another session of the person's occupant). An occupant
  message the rules match is archived with ``muc`` = room, nick, real JID (where the room
  revealed it) and ``flagged``: a room sends its messages to each of the person's sessions
  itself, so nothing guardmail does can withhold them from the person's other clients (Prosody
  has no per-occupant filter; carbons do not apply to group chat). The ``room_context`` room
  messages before it (a rolling buffer, bytes as delivered) and after it are archived as
  ``context_of`` it (no offender: never counted as the offender's), the person's own as
  ``outgoing``. The buffer holds ``room_context`` messages a room: memory is bounded.
  A message already archived (the room replays recent history at each join, with other bytes)
  is recognised by its reference ``<source>:muc:<room>:<nick>:<id>:<body digest>`` and not
  archived again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from xml.sax.saxutils import quoteattr

from guardmail.channels.xmpp.client import Received, WatchClient
from guardmail.channels.xmpp.sides import (
    Occupants,
    Outgoing,
    RoomMessage,
    read_groupchat,
    read_outgoing,
)
from guardmail.channels.xmpp.stanza import bare
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.item import Channel, Identity, Item, Summary
from guardmail.core.rules import Action, Verdict
from guardmail.core.warning import WARNING_ID_PREFIX
from guardmail.errors import VaultUnavailable
from guardmail.kept import INCOMING, OUTGOING, keep_many
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.base import Storage, StorageUnavailable

RETRY_SECONDS = 5.0
SENT_DONE = "the person's own message: archived only (the server delivered it)"
FLAGGED = (
    "flagged: a group-chat message, archived only; the room delivers it to each of the "
    "person's sessions itself, so it could not be withheld from their other clients"
)
CONTEXT_DONE = "room context: archived only, the messages around an offender's"
NS_MUC = "http://jabber.org/protocol/muc"


@dataclass(slots=True)
class _Room:
    before: deque[tuple[Item, RoomMessage]]
    after: list[list[int]] = field(default_factory=list)  # [offender seq, messages still due]


class Sides:
    """Takes the stanzas that are the person's side or a room's; see the module docstring."""

    def __init__(
        self,
        *,
        cfg: XmppSourceConfig,
        tenant: str,
        source: str,
        pipeline: Pipeline,
        storage: Storage,
        clock: Callable[[], datetime],
    ) -> None:
        self.cfg = cfg
        self.tenant = tenant
        self.source = source
        self.pipeline = pipeline
        self.storage = storage
        self.clock = clock
        self.occupants = Occupants({r.jid for r in cfg.rooms})
        self.nicks = {r.jid.casefold(): r.nick or cfg.jid.split("@", 1)[0] for r in cfg.rooms}
        size = cfg.room_context
        self._rooms = {r: _Room(before=deque(maxlen=size)) for r in self.nicks}

    def join(self, client: WatchClient) -> None:
        """Join every configured room (at each login), asking for its recent history."""
        for room, nick in self.nicks.items():
            history = f"<history maxstanzas='{max(self.cfg.room_context, 1) * 4}'/>"
            client.send_raw(
                f"<presence to={quoteattr(f'{room}/{nick}')}>"
                f"<x xmlns='{NS_MUC}'>{history}</x></presence>"
            )
            event("xmpp.room_joining", account=self.cfg.name, room=room, nick=nick)

    async def take(self, got: Received) -> bool:
        """Handle ``got`` if it is the person's own message, a watched room's message or an
        occupant's presence; whether it was. Retries while the vault is unavailable."""
        if self.occupants.presence(got.xml):
            return True
        out = read_outgoing(got.xml, account_bare=self.cfg.jid)
        if out is not None and (out.message_id or "").startswith(WARNING_ID_PREFIX):
            return True  # guardmail's own warning, handed back: journaled as the warning
        room = read_groupchat(got.xml, self.occupants) if out is None else None
        if out is None and room is None:
            return False
        while True:
            try:
                if out is not None:
                    await asyncio.to_thread(self._outgoing, got, out)
                elif room is not None:
                    await asyncio.to_thread(self._groupchat, got, room)
                return True
            except (VaultUnavailable, StorageUnavailable) as exc:
                event(
                    "xmpp.vault_unavailable",
                    level=logging.WARNING,
                    account=self.cfg.name,
                    retry_in=RETRY_SECONDS,
                    error=str(exc),
                )
                await asyncio.sleep(RETRY_SECONDS)

    # --- blocking side (a thread) --------------------------------------------------------

    def _item(
        self,
        got: Received,
        *,
        ref: str,
        via: str,
        sender: str,
        identities: tuple[Identity, ...],
        summary: Summary,
    ) -> Item:
        ctx, piece = got.context, got.piece
        meta = (
            ("via", via),
            ("from", sender),
            ("stream_header", ctx.header.decode("utf-8", "replace")),
            ("stream_id", ctx.stream_id),
            ("stream_offset", str(piece.offset)),
            ("server_cert_sha256", ctx.cert_sha256),
        )
        return Item(
            raw=piece.raw,
            channel=Channel.XMPP,
            tenant=self.tenant,
            account=self.cfg.name,
            source_ref=ref,
            received_at=got.received_at,
            identities=identities,
            summary=summary,
            meta=meta,
            dedupe_scope=self.source,
        )

    def _position(self, got: Received) -> str:
        ctx = got.context
        return f"{ctx.stream_id or f'c{ctx.connection}'}:{got.piece.offset}"

    def _outgoing(self, got: Received, out: Outgoing) -> None:
        key = out.message_id or self._position(got)
        ref = f"{self.source}:sent:{bare(out.to).casefold()}:{key}"
        item = self._item(
            got,
            ref=ref,
            via=out.via,
            sender=self.cfg.jid,
            identities=out.identities,
            summary=out.summary,
        )
        verdict = self.pipeline.judge_recipients(item)
        if verdict.action is Action.PASS:
            return
        with self.storage.read() as tx:
            if tx.find_archived_ref(self.tenant, ref) is not None:
                return  # the live carbon and the archive result of one message: kept once
        extra = {"to": out.to, "via": out.via}
        keep_many(
            self.pipeline, [item], [verdict], direction=OUTGOING, done=SENT_DONE, extra=[extra]
        )

    def _groupchat(self, got: Received, msg: RoomMessage) -> None:
        room = self._rooms[msg.room]
        own = msg.nick == self.nicks[msg.room] or (
            msg.real_jid is not None and bare(msg.real_jid).casefold() == self.cfg.jid.casefold()
        )
        ref = f"{self.source}:muc:{msg.room}:{msg.key or self._position(got)}"
        if msg.key is not None:
            with self.storage.read() as tx:
                if tx.find_archived_ref(self.tenant, ref) is not None:
                    return  # seen before (live, then in the history replayed at a join)
        item = self._item(
            got,
            ref=ref,
            via="groupchat",
            sender=f"{msg.room}/{msg.nick}",
            identities=msg.identities,
            summary=msg.summary,
        )
        now = self.clock()
        verdict = Verdict(action=Action.PASS, decided_at=now)
        if not own:
            verdict = self.pipeline.judge(item)
        if verdict.action is not Action.PASS:
            (receipt,) = keep_many(
                self.pipeline,
                [item],
                [verdict],
                direction=INCOMING,
                done=FLAGGED,
                extra=[{"muc": self._muc(msg) | {"flagged": True}}],
            )
            self._context(list(room.before), receipt.seq)
            room.before.clear()
            self._after(room)
            room.after.append([receipt.seq, self.cfg.room_context])
            return
        if room.after:
            self._context([(item, msg)], room.after[0][0], own=own)
            self._after(room)
            return
        room.before.append((item, msg))

    def _after(self, room: _Room) -> None:
        for due in room.after:
            due[1] -= 1
        room.after = [due for due in room.after if due[1] > 0]

    def _context(
        self, pairs: list[tuple[Item, RoomMessage]], of: int, *, own: bool | None = None
    ) -> None:
        """Archive ``pairs`` as the context of entry ``of`` (in order; the person's own as
        ``outgoing``)."""
        if not pairs:
            return
        now = self.clock()
        extra = [
            {
                "muc": self._muc(m) | {"context_of": of},
                "direction": OUTGOING
                if (own if own is not None else m.nick == self.nicks[m.room])
                else INCOMING,
            }
            for _, m in pairs
        ]
        keep_many(
            self.pipeline,
            [i for i, _ in pairs],
            [Verdict(action=Action.PASS, decided_at=now) for _ in pairs],
            direction=INCOMING,
            done=CONTEXT_DONE,
            extra=extra,
        )

    def _muc(self, msg: RoomMessage) -> dict[str, object]:
        return {"room": msg.room, "nick": msg.nick, "real_jid": msg.real_jid}
