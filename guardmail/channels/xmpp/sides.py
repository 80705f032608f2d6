"""The person's own messages in XMPP, and group-chat messages: who wrote to whom, from the parsed
stanza. Pure (no I/O, no slixmpp), like stanza.py.

- ``read_outgoing``: a message the person sent, as the watcher sees it: a Message Carbons
  ``sent`` copy (XEP-0280) from the account itself, or an archive result (XEP-0313) whose
  forwarded message is from the account. Its identity is the recipient's JID (``source: jid``,
  so the rules compare it as a JID): the person's messages are judged by whom they went to.
  Group-chat messages (``groupchat``) are not: they go to a room (``read_groupchat``).
- ``read_groupchat``: a ``groupchat`` message from an occupant of a watched room
  (``room@service/nick``; a message from the bare room is the room's own, never judged). Its
  identities are the occupant's real JID where the room revealed it (``Occupants``: presence
  ``muc#user`` items, sent in non-anonymous rooms and to moderators) and the nick as a display
  name, so ``display_names`` and patterns judge it where the room hides real JIDs.
- ``Occupants`` holds nick -> real JID per room, bounded (``MAX_OCCUPANTS`` a room).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass

from guardmail.channels.xmpp.stanza import (
    MESSAGE,
    NS_CARBONS,
    NS_CLIENT,
    NS_DELAY,
    NS_FORWARD,
    NS_MAM,
    NS_MUC_USER,
    PRESENCE,
    bare,
)
from guardmail.core.item import Identity, Summary

MAX_OCCUPANTS = 10_000
SUBJECT_LIMIT = 200
_FORWARDED = f"{{{NS_FORWARD}}}forwarded/{MESSAGE}"
_SHOWN = frozenset({"chat", "normal", "headline"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message the person sent: to whom (``to``, as written), how it was seen (``via``:
    ``sent carbon`` or ``mam``), its id, the archive result id, and what a list shows."""

    to: str
    via: str
    identities: tuple[Identity, ...]
    message_id: str | None = None
    result_id: str | None = None
    summary: Summary = Summary()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomMessage:
    """A group-chat message: the room (bare, casefolded), the occupant's nick, the real JID
    if the room revealed it, and the identities to judge."""

    room: str
    nick: str
    real_jid: str | None
    identities: tuple[Identity, ...]
    message_id: str | None = None
    summary: Summary = Summary()
    digest: str = ""  # SHA-256 of the body text (first 32 hex digits)

    @property
    def key(self) -> str | None:
        """What names this message however often the room sends it (live, then again in the
        history it replays at each join): nick, message id and a digest of the body, so that
        a sender reusing an id for another text is not taken for the same message."""
        if not self.message_id:
            return None
        return f"{self.nick}:{self.message_id}:{self.digest}"


def _own(jid: str | None, account_bare: str) -> bool:
    return jid is None or bare(jid).casefold() == account_bare.casefold()


def read_outgoing(xml: ET.Element, *, account_bare: str) -> Outgoing | None:
    """The person's own message in a top-level stanza, or None (see the module docstring)."""
    if xml.tag != MESSAGE or not _own(xml.get("from"), account_bare):
        return None
    inner = xml.find(f"{{{NS_CARBONS}}}sent/{_FORWARDED}")
    via, result_id = "sent carbon", None
    if inner is None:
        result = xml.find(f"{{{NS_MAM}}}result")
        if result is None:
            return None
        inner = result.find(_FORWARDED)
        via, result_id = "mam", result.get("id")
        if inner is None or not _own(inner.get("from"), account_bare):
            return None
    to = inner.get("to")
    kind = inner.get("type") or "normal"
    if not to or _own(to, account_bare) or kind not in _SHOWN:
        return None
    return Outgoing(
        to=to,
        via=via,
        identities=(Identity(source="jid", address=bare(to)),),
        message_id=inner.get("id"),
        result_id=result_id,
        summary=summary(inner),
    )


class Occupants:
    """Real JIDs of a room's occupants by nick, as presence reveals them (bounded)."""

    def __init__(self, rooms: set[str]) -> None:
        self.rooms = {r.casefold() for r in rooms}
        self._real: dict[str, OrderedDict[str, str]] = {r: OrderedDict() for r in self.rooms}

    def watches(self, jid: str | None) -> bool:
        return jid is not None and bare(jid).casefold() in self.rooms

    def presence(self, xml: ET.Element) -> bool:
        """Note an occupant's presence from a watched room; whether it was one."""
        sender = xml.get("from")
        if xml.tag != PRESENCE or not self.watches(sender) or sender is None or "/" not in sender:
            return False
        room, nick = bare(sender).casefold(), sender.split("/", 1)[1]
        known = self._real[room]
        item = xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
        real = item.get("jid") if item is not None else None
        if xml.get("type") == "unavailable":
            known.pop(nick, None)
        elif real:
            known[nick] = real
            known.move_to_end(nick)
            while len(known) > MAX_OCCUPANTS:
                known.popitem(last=False)
        return True

    def real_jid(self, room: str, nick: str) -> str | None:
        return self._real.get(room.casefold(), OrderedDict()).get(nick)


def read_groupchat(xml: ET.Element, occupants: Occupants) -> RoomMessage | None:
    """A group-chat message from an occupant of a watched room, or None."""
    sender = xml.get("from")
    if xml.tag != MESSAGE or xml.get("type") != "groupchat" or sender is None:
        return None
    if not occupants.watches(sender) or "/" not in sender:
        return None  # another room's, or the room's own (subject changes, notices)
    room, nick = bare(sender).casefold(), sender.split("/", 1)[1]
    real = occupants.real_jid(room, nick)
    found = [Identity(source="nick", display_name=nick)] if nick else []
    if real:
        found.insert(0, Identity(source="jid", address=real, display_name=nick or None))
    body = xml.find(f"{{{NS_CLIENT}}}body")
    text = "".join(body.itertext()) if body is not None else ""
    return RoomMessage(
        room=room,
        nick=nick,
        real_jid=real,
        identities=tuple(found),
        message_id=xml.get("id"),
        summary=summary(xml),
        digest=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32],
    )


def summary(xml: ET.Element) -> Summary:
    body = xml.find(f"{{{NS_CLIENT}}}body")
    text = "".join(body.itertext()).strip().split("\n", 1)[0] if body is not None else ""
    if not text:
        names = dict.fromkeys(child.tag.rpartition("}")[2] for child in xml)
        text = f"(no body: {', '.join(names)})" if names else "(empty)"
    delay = xml.find(f"{{{NS_DELAY}}}delay")
    return Summary(
        subject=" ".join(text.split())[:SUBJECT_LIMIT],
        message_id=(xml.get("id") or "")[:500],
        date=((delay.get("stamp") if delay is not None else None) or "")[:200],
    )
