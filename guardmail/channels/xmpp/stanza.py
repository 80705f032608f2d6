"""Reading who sent an XMPP stanza, and how it reached us, from its parsed element.

Pure (no I/O, no slixmpp): takes the ElementTree element slixmpp parsed from the same bytes the
evidence holds, and the watched account's bare JID.

What is judged (everything else is left alone and returns None):
- ``message``: every message a client shows, from anyone but the account itself: ``chat`` and
  ``normal`` (with or without a body: chat states, receipts, markers and body-less messages
  count), ``headline`` (clients pop these up), and ``error`` when it carries a body (clients show
  its text; a bodiless error is only a bounce notice). ``groupchat`` belongs to rooms (MUC).
- ``carbon``: a Message Carbons ``received`` copy (XEP-0280) sent by the account's own server;
  the inner forwarded message's sender is judged. ``sent`` copies are the victim's own messages.
- ``mam``: a result of our own archive query (XEP-0313), from the account's own server; the
  inner forwarded message is judged unless the account itself sent it.
- ``subscribe``: a presence subscription request.
Wrappers (carbons, MAM results) are trusted only from the account itself (no ``from``, or the
account's bare JID): anyone else's message holding such elements is judged as their message.
A ``stanza-id`` (XEP-0359) is taken only when ``trust_stanza_id`` says the account's server
advertises ``urn:xmpp:sid:0`` (and so strips forged ones): elsewhere a sender can write one, and
an id forged to match an earlier message would make the new one look already handled.

Identities: the sender's JID as given (full when it has a resource; the rules compare bare forms),
with its XEP-0172 nickname as display name. For MUC private messages (a ``muc#user`` element),
the occupant's nick is a display name too, and every real JID the room reveals is added: an
``<item jid=...>``, a mediated invitation's ``<invite from=...>``, an XEP-0033 ``ofrom`` address.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from guardmail.core.item import Identity, Summary

NS_CLIENT = "jabber:client"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_NICK = "http://jabber.org/protocol/nick"
NS_ADDRESS = "http://jabber.org/protocol/address"

MESSAGE = f"{{{NS_CLIENT}}}message"
PRESENCE = f"{{{NS_CLIENT}}}presence"
_FORWARDED_MESSAGE = f"{{{NS_FORWARD}}}forwarded/{MESSAGE}"
_JUDGED_TYPES = frozenset({"chat", "normal", "headline"})
SUBJECT_LIMIT = 200


class Via(enum.StrEnum):
    """How a judged stanza reached the watcher."""

    MESSAGE = "message"
    CARBON = "carbon"
    MAM = "mam"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A stanza to judge: who sent it, and the facts kept with the evidence.

    ``stanza_id`` is the id the account's own server gave it (XEP-0359 ``stanza-id`` with
    ``by`` = the account, or the MAM result id): the same message has the same one live, as a
    carbon and in the archive. ``judged`` is False for MAM results that need no judging (the
    account's own messages): the archive query still counts them.
    """

    via: Via
    sender: str
    identities: tuple[Identity, ...]
    stanza_id: str | None = None
    message_id: str | None = None
    muc_pm: bool = False
    stamp: str | None = None
    query_id: str | None = None
    summary: Summary = Summary()
    judged: bool = True


def bare(jid: str) -> str:
    """The bare JID (no resource), compared case-insensitively by callers."""
    return jid.split("/", 1)[0]


def _same_account(jid: str | None, account_bare: str) -> bool:
    return jid is None or bare(jid).casefold() == account_bare.casefold()


def read_stanza(
    xml: ET.Element, *, account_bare: str, trust_stanza_id: bool = False
) -> Incoming | None:
    """What to judge in a top-level stanza, or None when it is not ours to judge.

    ``trust_stanza_id``: the account's server advertises ``urn:xmpp:sid:0`` (see the module
    docstring); without it no ``stanza-id`` is read.
    """
    if xml.tag == PRESENCE:
        return _subscription(xml, account_bare)
    if xml.tag != MESSAGE:
        return None
    sender = xml.get("from")
    if _same_account(sender, account_bare):
        received = xml.find(f"{{{NS_CARBONS}}}received/{_FORWARDED_MESSAGE}")
        if received is not None:
            return _message(received, account_bare, Via.CARBON, trust_stanza_id)
        result = xml.find(f"{{{NS_MAM}}}result")
        if result is not None:
            return _mam_result(result, account_bare)
        return None  # the victim's own sent carbons, PEP from their account, server notices
    return _message(xml, account_bare, Via.MESSAGE, trust_stanza_id)


def _subscription(xml: ET.Element, account_bare: str) -> Incoming | None:
    sender = xml.get("from")
    if xml.get("type") != "subscribe" or sender is None or _same_account(sender, account_bare):
        return None
    nick = _text(xml.find(f"{{{NS_NICK}}}nick"))
    return Incoming(
        via=Via.SUBSCRIBE,
        sender=sender,
        identities=(Identity(source="jid", address=sender, display_name=nick or None),),
        message_id=xml.get("id"),
        summary=Summary(subject="presence subscription request", message_id=xml.get("id") or ""),
    )


def _shown(xml: ET.Element) -> bool:
    """Whether a client shows this message to the person (see the module docstring)."""
    kind = xml.get("type") or "normal"
    if kind == "error":
        return bool(_text(xml.find(f"{{{NS_CLIENT}}}body")).strip())
    return kind in _JUDGED_TYPES


def _message(
    xml: ET.Element, account_bare: str, via: Via, trust_stanza_id: bool = False
) -> Incoming | None:
    sender = xml.get("from")
    if sender is None or not _shown(xml) or _same_account(sender, account_bare):
        return None
    # A message the server kept while the account was offline carries its delay stamp
    # (XEP-0203): when the server received it, kept with the evidence.
    delay = xml.find(f"{{{NS_DELAY}}}delay")
    return Incoming(
        via=via,
        sender=sender,
        identities=_identities(xml, sender),
        stanza_id=_stanza_id(xml, account_bare) if trust_stanza_id else None,
        message_id=xml.get("id"),
        muc_pm=xml.find(f"{{{NS_MUC_USER}}}x") is not None,
        stamp=delay.get("stamp") if delay is not None else None,
        summary=_summary(xml, None),
    )


def _mam_result(result: ET.Element, account_bare: str) -> Incoming:
    query_id, result_id = result.get("queryid"), result.get("id")
    stamp = result.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay")
    stamp_text = stamp.get("stamp") if stamp is not None else None
    inner = result.find(_FORWARDED_MESSAGE)
    found = _message(inner, account_bare, Via.MAM) if inner is not None else None
    if found is None:
        return Incoming(
            via=Via.MAM,
            sender=account_bare,
            identities=(),
            stanza_id=result_id,
            query_id=query_id,
            stamp=stamp_text,
            judged=False,
        )
    return Incoming(
        via=Via.MAM,
        sender=found.sender,
        identities=found.identities,
        stanza_id=result_id,
        message_id=found.message_id,
        muc_pm=found.muc_pm,
        stamp=stamp_text,
        query_id=query_id,
        summary=_summary(inner, stamp_text) if inner is not None else Summary(),
    )


def _identities(xml: ET.Element, sender: str) -> tuple[Identity, ...]:
    nick = _text(xml.find(f"{{{NS_NICK}}}nick"))
    muc = xml.find(f"{{{NS_MUC_USER}}}x")
    if muc is None:
        return (Identity(source="jid", address=sender, display_name=nick or None),)
    occupant = sender.split("/", 1)[1] if "/" in sender else ""
    found = [Identity(source="jid", address=sender, display_name=occupant or nick or None)]
    if nick and occupant and nick != occupant:
        found.append(Identity(source="jid", display_name=nick))
    real = [item.get("jid") for item in muc.findall(f"{{{NS_MUC_USER}}}item")]
    real += [inv.get("from") for inv in muc.findall(f"{{{NS_MUC_USER}}}invite")]
    real += [
        a.get("jid")
        for a in xml.findall(f"{{{NS_ADDRESS}}}addresses/{{{NS_ADDRESS}}}address")
        if a.get("type") == "ofrom"
    ]
    found += [Identity(source="jid", address=j) for j in dict.fromkeys(real) if j]
    return tuple(found)


def _stanza_id(xml: ET.Element, account_bare: str) -> str | None:
    """The last stanza-id the account's server wrote: servers append theirs, and some (Prosody
    0.12 in carbons) pass a sender's forged ones through ahead of it."""
    found = None
    for sid in xml.findall(f"{{{NS_SID}}}stanza-id"):
        by = sid.get("by")
        if by is not None and by.casefold() == account_bare.casefold() and sid.get("id"):
            found = sid.get("id")
    return found


def fingerprint(incoming: Incoming) -> tuple[str, str, str]:
    """What the live, carbon and archive copies of one message share besides its server id:
    a second message under a seen id (forged where the server did not add its own) differs."""
    return (bare(incoming.sender).casefold(), incoming.message_id or "", incoming.summary.subject)


def _summary(xml: ET.Element, stamp: str | None) -> Summary:
    subject = _text(xml.find(f"{{{NS_CLIENT}}}subject"))
    if not subject:
        body = _text(xml.find(f"{{{NS_CLIENT}}}body"))
        subject = body.strip().split("\n", 1)[0] if body else ""
    if not subject:
        names = dict.fromkeys(child.tag.rpartition("}")[2] for child in xml)
        subject = f"(no body: {', '.join(names)})" if names else "(empty)"
    delay = xml.find(f"{{{NS_DELAY}}}delay")
    date = stamp or (delay.get("stamp") if delay is not None else None) or ""
    return Summary(
        subject=" ".join(subject.split())[:SUBJECT_LIMIT],
        message_id=(xml.get("id") or "")[:500],
        date=date[:200],
    )


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()) if element is not None else ""
