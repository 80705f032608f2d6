"""The few requests the XMPP watcher makes, built and read as plain XML (no slixmpp plugins):
roster, Message Carbons (XEP-0280), ping (XEP-0199), blocking command (XEP-0191) and archive
queries (XEP-0313 with RSM, XEP-0059).

Hand-built rather than through slixmpp's plugins: the archive query's results must reach the
watcher with their bytes (through the tee), not be collected by a plugin, and each plugin costs
memory on every one of hundreds of clients.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from slixmpp import ClientXMPP
from slixmpp.stanza import Iq

from guardmail.channels.xmpp.stanza import NS_CARBONS, NS_MAM

NS_ROSTER = "jabber:iq:roster"
NS_BLOCKING = "urn:xmpp:blocking"
NS_PING = "urn:xmpp:ping"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def _iq(client: ClientXMPP, kind: str, payload: ET.Element, to: str | None = None) -> Iq:
    iq = client.Iq()
    iq["type"] = kind
    if to is not None:
        iq["to"] = to
    iq.xml.append(payload)
    return iq


def roster_get(client: ClientXMPP) -> Iq:
    return _iq(client, "get", ET.Element(f"{{{NS_ROSTER}}}query"))


def roster_items(xml: ET.Element) -> list[tuple[str, str]]:
    """(jid, subscription) of every item in a roster result or push."""
    query = xml.find(f"{{{NS_ROSTER}}}query")
    if query is None:
        return []
    return [
        (item.get("jid", ""), item.get("subscription", "none"))
        for item in query.findall(f"{{{NS_ROSTER}}}item")
        if item.get("jid")
    ]


def disco_info(client: ClientXMPP, to: str) -> Iq:
    return _iq(client, "get", ET.Element(f"{{{NS_DISCO_INFO}}}query"), to=to)


def disco_features(xml: ET.Element) -> set[str]:
    """The ``var`` of every feature in a disco#info result."""
    query = xml.find(f"{{{NS_DISCO_INFO}}}query")
    if query is None:
        return set()
    return {f.get("var", "") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")} - {""}


def carbons_enable(client: ClientXMPP) -> Iq:
    return _iq(client, "set", ET.Element(f"{{{NS_CARBONS}}}enable"))


def ping(client: ClientXMPP, to: str) -> Iq:
    return _iq(client, "get", ET.Element(f"{{{NS_PING}}}ping"), to=to)


def blocklist_get(client: ClientXMPP) -> Iq:
    return _iq(client, "get", ET.Element(f"{{{NS_BLOCKING}}}blocklist"))


def blocklist_items(xml: ET.Element) -> set[str]:
    found = xml.find(f"{{{NS_BLOCKING}}}blocklist")
    if found is None:
        return set()
    return {i.get("jid", "") for i in found.findall(f"{{{NS_BLOCKING}}}item") if i.get("jid")}


def blocklist_change(client: ClientXMPP, verb: str, jids: Iterable[str]) -> Iq:
    """``block`` or ``unblock`` the given JIDs. Never empty: an empty ``unblock`` would clear the
    person's whole blocklist, including what they blocked themselves."""
    if verb not in ("block", "unblock"):
        raise ValueError(f"unknown blocklist verb {verb!r}")
    payload = ET.Element(f"{{{NS_BLOCKING}}}{verb}")
    for jid in sorted(jids):
        ET.SubElement(payload, f"{{{NS_BLOCKING}}}item", {"jid": jid})
    if not len(payload):
        raise ValueError(f"refusing an empty {verb}: it would apply to every blocked JID")
    return _iq(client, "set", payload)


def mam_query(
    client: ClientXMPP,
    *,
    query_id: str,
    max_items: int,
    after: str | None = None,
    start: str | None = None,
) -> Iq:
    """One page of the account's archive, oldest first, after an archive id or from a time."""
    query = ET.Element(f"{{{NS_MAM}}}query", {"queryid": query_id})
    if start is not None:
        form = ET.SubElement(query, f"{{{NS_DATA}}}x", {"type": "submit"})
        for var, value, kind in (("FORM_TYPE", NS_MAM, "hidden"), ("start", start, None)):
            field = ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": var})
            if kind:
                field.set("type", kind)
            ET.SubElement(field, f"{{{NS_DATA}}}value").text = value
    rsm = ET.SubElement(query, f"{{{NS_RSM}}}set")
    ET.SubElement(rsm, f"{{{NS_RSM}}}max").text = str(max_items)
    if after is not None:
        ET.SubElement(rsm, f"{{{NS_RSM}}}after").text = after
    return _iq(client, "set", query)


def mam_fin(xml: ET.Element) -> tuple[bool, str | None]:
    """(complete, id of the page's last result) from the query's final answer."""
    fin = xml.find(f"{{{NS_MAM}}}fin")
    if fin is None:
        return True, None
    last = fin.find(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last")
    return fin.get("complete") in ("true", "1"), last.text if last is not None else None
