"""Reporting an item by hand: keep it as evidence and block its sender from now on.

A person sees harassment in their mail or chat client and reports it (``guardmail report``, the
Thunderbird add-on, the neomutt macro, the Gajim plugin). The item takes the same path as
everything the sources see: ``Pipeline.process`` decides, archives durably and then calls an
actor, here one that does nothing but say "reported by the user" (the client moves the message
itself). Its sender is added to ``offenders.d/reported.yaml`` (see ``control.offenders``), which
the daemon hot-reloads, so what the offender sends next is caught without the person.

Contracts:
- Order: the sender's new rule is planned first, the item is archived with rules that include
  it, and only then is the offenders file written. Nothing is written when archiving fails; when
  writing fails after archiving, the evidence stays and ``ReportIncomplete`` names it.
- The same bytes reported twice archive once (one dedupe scope for every report and client).
- The vault records how the item arrived, beside the usual metadata (``Item.meta``):
  ``arrived=reported``, the client, the local user and uid, the way in (in-process or control
  socket) and the fidelity of the bytes (``exact``, or ``as re-serialised by the client``).
- The sender added is the From address for mail and the bare ``from`` JID for XMPP. When the
  current rules already cover that sender, nothing is added.
- A stanza reported by a chat client is the client's re-serialisation, not the wire bytes: when
  the daemon's XMPP watcher archived the same server ``stanza-id``, the report's metadata names
  that entry (``wire_copy_seq``), which holds the bytes as received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guardmail.channels.xmpp.stanza import NS_CLIENT, bare, read_stanza
from guardmail.config.settings import LoadedConfig, OffenderConfig
from guardmail.control.offenders import (
    BadReport,
    Key,
    ReportedFile,
    load_hint,
    loads_reported,
    plan,
    reported_path,
)
from guardmail.core.item import Channel, Identity, Item, mail_item
from guardmail.core.rules import Action, RuleSet, Verdict, decide
from guardmail.daemon.tenant import Tenant, build_rules
from guardmail.errors import GuardmailError
from guardmail.pipeline import Pipeline
from guardmail.vault import journal
from guardmail.vault.store import Vault

# Larger than any mail server accepts (25-50 MB is usual); a report beyond it is refused.
MAX_ITEM_BYTES = 100 * 1024 * 1024
DEDUPE_SCOPE = "reported"
EXACT = "exact"
RESERIALISED = "as re-serialised by the client"


class ReportIncomplete(GuardmailError):
    """The item was archived but its sender could not be added to the offenders file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRequest:
    """One item a person reports, and how it reached guardmail.

    ``offender`` names an existing offender to add the sender to as an alias; ``new_offender``
    creates one; with neither, a sender no rule covers becomes an offender named after its
    address. ``action`` applies to a new offender only. ``note`` is what the client says about
    the bytes (e.g. Thunderbird's own status lines it removed), kept with the evidence.
    """

    raw: bytes
    channel: Channel = Channel.MAIL
    offender: str | None = None
    new_offender: str | None = None
    action: Action = Action.QUARANTINE
    client: str = "cli"
    account: str = ""
    user: str
    uid: int
    via: str = "in-process"
    fidelity: str = EXACT
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reported:
    """What a report did. ``rule_added`` is None when the sender was already covered."""

    seq: int
    sha256: str
    size: int
    duplicate: bool
    offender: str
    rule_added: str | None
    covered_by: str | None
    offenders_file: str
    file_loaded: bool
    hint: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "sha256": self.sha256,
            "size": self.size,
            "duplicate": self.duplicate,
            "offender": self.offender,
            "rule_added": self.rule_added,
            "covered_by": self.covered_by,
            "offenders_file": self.offenders_file,
            "file_loaded": self.file_loaded,
            "hint": self.hint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reported:
        """The inverse of ``to_json`` (an answer from the control socket)."""
        return cls(
            seq=int(data["seq"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            duplicate=bool(data["duplicate"]),
            offender=str(data["offender"]),
            rule_added=None if data["rule_added"] is None else str(data["rule_added"]),
            covered_by=None if data["covered_by"] is None else str(data["covered_by"]),
            offenders_file=str(data["offenders_file"]),
            file_loaded=bool(data["file_loaded"]),
            hint=None if data["hint"] is None else str(data["hint"]),
        )


class _ReportedActor:
    """The client moves the message itself; the action journaled says who reported it."""

    def __init__(self, request: ReportRequest) -> None:
        self._request = request

    async def act(self, item: Item, verdict: Verdict) -> str:
        r = self._request
        return f"reported by the user {r.user} from {r.client}"


def _parse_stanza(raw: bytes) -> ET.Element:
    try:
        element = ET.fromstring(raw)
        if not element.tag.startswith("{"):
            # Wire text from inside a stream inherits jabber:client from the stream header.
            wrapped = b"<stream xmlns='" + NS_CLIENT.encode() + b"'>" + raw + b"</stream>"
            element = ET.fromstring(wrapped)[0]
    except (ET.ParseError, IndexError) as exc:
        raise BadReport(f"the XMPP item is not one well-formed stanza: {exc}") from None
    return element


def build_item(request: ReportRequest, *, tenant: str, now: datetime) -> tuple[Item, Key, str]:
    """The Item for a report, and the sender identity (key and value) to add as a rule."""
    raw = request.raw
    if not raw.strip():
        raise BadReport("the item is empty: pipe the whole message or stanza on standard input")
    if len(raw) > MAX_ITEM_BYTES:
        raise BadReport(f"the item is {len(raw)} bytes, more than the {MAX_ITEM_BYTES} accepted")
    sha = hashlib.sha256(raw).hexdigest()
    meta = [
        ("arrived", "reported"),
        ("client", request.client),
        ("local_user", request.user),
        ("local_uid", str(request.uid)),
        ("via", request.via),
        ("fidelity", request.fidelity),
    ]
    if request.note:
        meta.append(("client_note", request.note[:500]))
    account = request.account or f"reported from {request.client}"
    source_ref = f"report:{request.client}:{sha[:16]}"
    if request.channel is Channel.MAIL:
        item = mail_item(
            raw,
            tenant=tenant,
            account=account,
            source_ref=source_ref,
            received_at=now,
            meta=tuple(meta),
            dedupe_scope=DEDUPE_SCOPE,
        )
        sender = next((i.address for i in item.identities if i.source == "From" and i.address), "")
        if not sender:
            raise BadReport("the message has no From address to block")
        return item, "addresses", sender
    # The stanza-id is only a pointer to the watcher's own wire copy (which carries one only
    # where the server advertises them), so the client's copy may name it as written.
    incoming = read_stanza(
        _parse_stanza(raw), account_bare=bare(request.account), trust_stanza_id=True
    )
    if incoming is None or not incoming.identities:
        raise BadReport("the stanza is not a message or subscription request from someone else")
    if incoming.stanza_id:
        meta.append(("stanza_id", incoming.stanza_id))
    item = Item(
        raw=raw,
        channel=Channel.XMPP,
        tenant=tenant,
        account=account,
        source_ref=source_ref,
        received_at=now,
        identities=incoming.identities,
        summary=incoming.summary,
        meta=tuple(meta),
        dedupe_scope=DEDUPE_SCOPE,
    )
    return item, "jids", bare(incoming.sender)


def wire_copy(vault: Vault, stanza_id: str) -> int | None:
    """The vault entry of the stanza the daemon's XMPP watcher archived with ``stanza_id``."""
    for row in vault.iter_rows(kind="archived"):
        fields = journal.entry(row)
        meta = fields.get("meta")
        if fields.get("channel") == Channel.XMPP.value and isinstance(meta, dict):
            if meta.get("stanza_id") == stanza_id and meta.get("arrived") != "reported":
                return row.seq
    return None


def _rules(config: LoadedConfig, offenders: list[OffenderConfig]) -> RuleSet:
    return build_rules(config.settings.model_copy(update={"offenders": offenders}))


async def file_report(
    request: ReportRequest, *, config: LoadedConfig, tenant: Tenant, now: datetime
) -> Reported:
    """Archive the reported item through the pipeline and add its sender; see the contracts."""
    item, key, value = build_item(request, tenant=tenant.name, now=now)
    stanza_id = dict(item.meta).get("stanza_id")
    if stanza_id is not None:
        # A client's copy of a stanza the watcher already archived from the wire: link them.
        seq = await asyncio.to_thread(wire_copy, tenant.vault, stanza_id)
        if seq is not None:
            item = dataclasses.replace(item, meta=(*item.meta, ("wire_copy_seq", str(seq))))
    path = reported_path(config.path)
    store = ReportedFile(path)
    with ExitStack() as stack:
        await asyncio.to_thread(stack.enter_context, store.locked())
        reported = tuple(await asyncio.to_thread(store.read))
        names = {o.name.casefold() for o in reported}
        hand_written = [o for o in config.settings.offenders if o.name.casefold() not in names]
        identity = Identity(source="jid" if key == "jids" else "From", address=value)
        covered = decide((identity,), _rules(config, [*hand_written, *reported]), now=now).offender
        new_plan = None
        if covered is None:
            new_plan = plan(
                hand_written=hand_written,
                reported=reported,
                key=key,
                value=value,
                offender=request.offender,
                new_offender=request.new_offender,
                action=str(request.action),
                ids=await asyncio.to_thread(tenant.warner.ids),
            )
            reported = new_plan.entries
        pipeline = Pipeline(
            vault=tenant.vault,
            rules=_rules(config, [*hand_written, *reported]),
            clock=lambda: now,
            after_block=tenant.warner.on_block,
        )
        outcome = await pipeline.process(item, _ReportedActor(request))
        receipt, offender = outcome.receipt, outcome.verdict.offender
        if receipt is None or offender is None:
            raise AssertionError(f"a reported item was not archived: {outcome.verdict}")
        if new_plan is not None:
            try:
                await asyncio.to_thread(store.write, reported)
            except OSError as exc:
                raise ReportIncomplete(
                    f"archived as vault entry {receipt.seq} (sha256 {receipt.sha256}), but "
                    f"{path} could not be written, so {value} is not blocked yet: {exc}"
                ) from exc
    loaded = loads_reported(config, path)
    return Reported(
        seq=receipt.seq,
        sha256=receipt.sha256,
        size=len(request.raw),
        duplicate=receipt.duplicate,
        offender=offender,
        rule_added=new_plan.addition.describe() if new_plan else None,
        covered_by=covered,
        offenders_file=str(path),
        file_loaded=loaded,
        hint=None if loaded else load_hint(config, path),
    )
