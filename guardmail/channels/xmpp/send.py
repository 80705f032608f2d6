"""Sending one XMPP message (the warning) from the person's own account.

Contracts:
- A short session of its own, on a resource of its own (``<resource>-warning-<random>``), so the
  watcher's session is never replaced. It sends no presence, so nothing meant for the person is
  routed to it; it logs in with the watcher's TLS rules (verified; ``tls: none`` loopback only).
- The stanza's bytes are written to the stream exactly as given (``send_raw``), never a
  re-serialisation: the vault holds what was sent.
- Certain failure: nothing was written (no session, a secret that cannot be read), or the server
  answered the message with an error before it answered a ping sent right after it (a server
  handles one session's stanzas in order, so its own refusal, e.g. a blocked or unknown local
  recipient, arrives first). Unknown: the session ended after the message was written and before
  the ping's answer. A remote server's later bounce cannot be seen here.
- A server blocklist entry (XEP-0191) that covers the recipient (their JID, full or bare, or
  their domain) would make the server refuse the message: such entries are lifted for the send
  and blocked again right after, success or not, and the reply says so. If the session dies in
  between, the watcher's next blocklist sync re-adds the entries guardmail manages; the person's
  own entries would stay lifted, and the error says which.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.xmlstream.xmlstream import NotConnectedError

from guardmail.channels.xmpp import blocklist, queries
from guardmail.channels.xmpp.client import WatchClient, shared_context
from guardmail.channels.xmpp.session import Lost, Refused, login, request, teardown
from guardmail.channels.xmpp.stanza import MESSAGE
from guardmail.channels.xmpp.tee import Slice
from guardmail.config.secrets import read_secret
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.errors import ConnectFailure, SecretError, SubmitError
from guardmail.logs import event

_NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

__all__ = ["SubmitError", "covering", "send_message"]


def send_message(cfg: XmppSourceConfig, *, raw: bytes, stanza_id: str, recipient: str) -> str:
    """Send the message stanza ``raw`` (whose id is ``stanza_id``) from ``cfg``'s account;
    return what the server showed of its acceptance. Blocking: runs its own event loop, so call
    it from a thread that has none (the CLI, or a worker thread of the daemon)."""
    try:
        password = read_secret(file=cfg.password_file, command=cfg.password_command)
    except SecretError as exc:
        raise SubmitError(f"cannot send from {cfg.jid}: {exc}", certain=True) from None
    return asyncio.run(_send(cfg, password, raw=raw, stanza_id=stanza_id, recipient=recipient))


def covering(entries: set[str], recipient: str) -> set[str]:
    """The blocklist entries that block messages to ``recipient`` (XEP-0191 section 3.3)."""
    bare = (blocklist.canonical(recipient) or recipient).casefold()
    domain = bare.rpartition("@")[2]
    found = set()
    for entry in entries:
        base = entry.casefold().partition("/")[0]
        if base in (bare, domain):
            found.add(entry)
    return found


async def _send(
    cfg: XmppSourceConfig, password: str, *, raw: bytes, stanza_id: str, recipient: str
) -> str:
    refusals: list[str] = []

    def on_stanza(xml: ET.Element, _piece: Slice, _context: Any) -> None:
        if xml.tag == MESSAGE and xml.get("type") == "error" and xml.get("id") == stanza_id:
            refusals.append(_error_text(xml))

    client = WatchClient(
        jid=f"{cfg.jid}/{cfg.resource}-warning-{secrets.token_hex(4)}",
        password=password,
        tls=cfg.tls,
        ssl_context=shared_context(cfg.ca_file),
        on_stanza=on_stanza,
        connection=1,
    )
    del password
    seconds = cfg.timeout_seconds
    try:
        try:
            await login(client, cfg, on_roster_push=lambda _: None)
            lifted = await _lift(client, cfg, recipient)
        except (ConnectFailure, Lost, Refused, NotConnectedError) as exc:
            # Nothing was written yet (a refused unblock included): certainly not sent.
            reason = (
                exc.reason if isinstance(exc, ConnectFailure) else str(exc) or "connection closed"
            )
            raise SubmitError(f"not sent from {cfg.jid}: {reason}", certain=True) from None
        try:
            try:
                client.send_raw(raw.decode("utf-8"))
            except NotConnectedError:
                raise SubmitError(f"not sent: {cfg.jid}'s session closed", certain=True) from None
            try:
                await request(client, queries.ping(client, client.boundjid.domain), seconds=seconds)
            except Refused:
                pass  # an answer all the same: everything before the ping was handled
            except (Lost, NotConnectedError) as exc:
                raise SubmitError(
                    f"session lost after the message was written: {exc}", certain=False
                ) from None
        finally:
            restored = await _restore(client, cfg, lifted)
        if refusals:
            raise SubmitError(f"{cfg.domain} refused the message: {refusals[0]}", certain=True)
        reply = f"accepted by {cfg.domain} (no error before its answer to a ping sent after it)"
        if lifted:
            reply += f"; blocklist entries {', '.join(sorted(lifted))} lifted for it" + (
                " and restored" if restored else ", NOT restored: block them again"
            )
        return reply
    finally:
        teardown(client)


async def _lift(client: WatchClient, cfg: XmppSourceConfig, recipient: str) -> set[str]:
    """Unblock what would stop the message; the entries to block again afterwards."""
    try:
        answer = await request(client, queries.blocklist_get(client), seconds=cfg.timeout_seconds)
    except Refused:
        return set()  # no blocking command on this server: nothing can be in the way
    lifted = covering(queries.blocklist_items(answer.xml), recipient)
    if lifted:
        iq = queries.blocklist_change(client, "unblock", lifted)
        await request(client, iq, seconds=cfg.timeout_seconds)
        event("warning.block_lifted", account=cfg.name, entries=",".join(sorted(lifted)))
    return lifted


async def _restore(client: WatchClient, cfg: XmppSourceConfig, lifted: set[str]) -> bool:
    if not lifted:
        return True
    try:
        iq = queries.blocklist_change(client, "block", lifted)
        await request(client, iq, seconds=cfg.timeout_seconds)
    except (Lost, Refused, NotConnectedError) as exc:
        event(
            "warning.block_not_restored",
            account=cfg.name,
            entries=",".join(sorted(lifted)),
            error=str(exc) or type(exc).__name__,
        )
        return False
    event("warning.block_restored", account=cfg.name, entries=",".join(sorted(lifted)))
    return True


def _error_text(xml: ET.Element) -> str:
    error = xml.find("{jabber:client}error")
    if error is None:
        return "error"
    conditions = [c.tag.rpartition("}")[2] for c in error if c.tag.startswith(f"{{{_NS_STANZAS}")]
    text = error.findtext(f"{{{_NS_STANZAS}}}text") or ""
    named = next((c for c in conditions if c != "text"), "error")
    return f"{named} ({text})" if text else named
