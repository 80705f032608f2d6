"""The one cease-contact warning per offender: planned, sent at most once, ever, and documented.

Invariants:
- "Offender" means the person, not the label: the ledger is keyed by the offender's id
  (``id:`` in the config, else fixed at first sight in state: guardmail.core.offender_ids and
  guardmail.offender_registry). Entries sharing an id, such as an offender and the
  ``NAME (reported)`` entry a report adds aliases to, get one warning between them; renaming an
  offender does not re-arm it.
- At most one per offender per tenant, across restarts, crashes and concurrent processes: the
  ledger row is claimed (state ``sending``) in a write transaction before anything is sent, so of
  two racing processes exactly one claims it. The result is recorded after. A row left in
  ``sending`` means the outcome is unknown; guardmail never retries it by itself, only when the
  person says so (``retry=True`` or ``mark_sent``).
- Evidence first: the exact bytes are in the vault's blob store before the claim; a ``warning``
  journal entry (sha256, offender, to, sent_at, message_id, server reply) follows the send.
- Sent only to a concrete address the offender used (in archived evidence) or the config lists
  (guardmail.warning_recipients), never in answer to auto-submitted, list or bounce mail
  (RFC 3834).
- Over XMPP with ``on_first_block``, the warning goes before any server block: offenders still
  owed one are held out of the server blocklist (``held_server_blocks``) until the ledger has a
  row for them; a block entry that covers the recipient is lifted for
  the send (channels/xmpp/send.py).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid, parseaddr

from guardmail.config.settings import OffenderConfig, Settings
from guardmail.config.warning import WarningConfig
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.item import Channel, Item
from guardmail.core.rules import Action, Verdict
from guardmail.core.warning import (
    WARNING_ID_PREFIX,
    TemplateError,
    UnsafeValue,
    WarningMessage,
    render_warning,
    render_xmpp_warning,
    should_not_answer,
)
from guardmail.errors import GuardmailError, SubmitError
from guardmail.logs import event
from guardmail.offender_registry import resolve
from guardmail.storage.base import Storage, WarningRow
from guardmail.vault.store import Vault
from guardmail.warning_recipients import mail_recipients, xmpp_recipients


class WarningRefused(GuardmailError):
    """The warning is not sent: already sent or claimed, no safe recipient, unsafe content."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    offender: str
    offender_id: str
    message: WarningMessage


def describe(row: WarningRow | None) -> str:
    """The warning state as a person reads it."""
    if row is None:
        return "not sent"
    if row.state == "sent":
        kind = "Message-ID" if row.message_id.startswith("<") else "stanza id"
        return f"sent at {row.finished_at} to {row.recipient}, {kind} {row.message_id}"
    if row.state == "marked_sent":
        return f"marked as sent by you at {row.finished_at} ({row.detail})"
    if row.state == "failed":
        return f"not sent: failed at {row.finished_at}: {row.detail}"
    return (
        f"unknown: sending to {row.recipient} began at {row.started_at} and no result was "
        f"recorded{': ' + row.detail if row.detail else ''}; check your Sent folder, then "
        "run `guardmail warn OFFENDER --mark-sent` or `--retry`"
    )


class Warner:
    def __init__(
        self,
        *,
        settings: Settings,
        vault: Vault,
        storage: Storage,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.vault = vault
        self.storage = storage
        self.clock = clock
        self.settings = settings  # swapped on reload

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings
        self._ids: dict[str, str] | None = None  # resolved when first needed

    def ids(self) -> dict[str, str]:
        """Each offender's id by case-folded name (resolved once per settings; see the
        contract of guardmail.offender_registry)."""
        ids = self._ids
        if ids is None:
            ids = resolve(
                self.storage, self.vault.tenant, self.settings.offenders, now=self.clock()
            )
            self._ids = ids
        return ids

    def offender_id(self, name: str) -> str:
        """The ledger key of the offender named ``name``: its id, or for a name no entry has
        (a ledger row from before ids, of an offender since removed) the name case-folded."""
        key = name.strip().casefold()
        return self.ids().get(key, key)

    def same_person(self, name: str) -> frozenset[str]:
        """The case-folded names of every entry sharing ``name``'s id (``name`` included)."""
        ids = self.ids()
        key = name.strip().casefold()
        wanted = ids.get(key)
        return frozenset({key, *(n for n, i in ids.items() if wanted is not None and i == wanted)})

    @property
    def config(self) -> WarningConfig:
        if self.settings.warning is None:
            raise WarningRefused("no `warning:` section in the configuration")
        return self.settings.warning

    def offender(self, name: str) -> OffenderConfig:
        for o in self.settings.offenders:
            if o.name.casefold() == name.strip().casefold():
                return o
        known = ", ".join(o.name for o in self.settings.offenders) or "none"
        raise WarningRefused(f"no offender named {name!r} (known: {known})")

    def recipients(self, offender: OffenderConfig) -> list[str]:
        """Concrete addresses (or JIDs, channel xmpp): the config's, then those the offender
        wrote from (evidence); see guardmail.warning_recipients."""
        if self.config.channel == "xmpp":
            return xmpp_recipients(self.vault, offender, self.same_person(offender.name))
        return mail_recipients(self.vault, offender, self.same_person(offender.name))

    def account(self) -> XmppSourceConfig:
        """The XMPP account the warning is sent from (channel xmpp)."""
        name = self.config.xmpp_account
        for source in self.settings.sources.xmpp:
            if source.name == name:
                return source
        raise WarningRefused(f"no XMPP account named {name!r} under sources.xmpp")

    def plan(self, name: str, *, to: str | None = None) -> Plan:
        cfg = self.config
        offender = self.offender(name)
        choices = self.recipients(offender)
        if to is not None:
            wanted = parseaddr(to)[1].casefold()
            matching = [c for c in choices if c.casefold() == wanted]
            if not matching:
                raise WarningRefused(
                    f"{to!r} is not an address {offender.name!r} used or the config lists "
                    f"(choices: {', '.join(choices) or 'none'})"
                )
            recipient = matching[0]
        elif choices:
            recipient = choices[0]
        else:
            raise WarningRefused(
                f"no concrete address for {offender.name!r}: list one under its `addresses` "
                "(patterns and domains are never written to)"
            )
        now = self.clock()
        if cfg.channel == "xmpp":
            sender = cfg.from_ or self.account().jid
        else:
            sender = cfg.from_ or ""
        victim = cfg.victim or parseaddr(sender)[0] or parseaddr(sender)[1]
        try:
            template = cfg.template_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WarningRefused(f"cannot read template {cfg.template_file}: {exc}") from None
        values = {
            "offender": offender.name,
            "greeting_name": offender.greeting_name or "",
            "victim": victim,
            "date": now.date().isoformat(),
            "law": cfg.law,
            "recipient": recipient,
        }
        try:
            if cfg.channel == "xmpp":
                message = render_xmpp_warning(
                    template=template,
                    values=values,
                    sender=self.account().jid,
                    recipient=recipient,
                    date=now.isoformat(),
                    stanza_id=f"{WARNING_ID_PREFIX}{uuid.uuid4()}",
                )
            else:
                message = render_warning(
                    template=template,
                    values=values,
                    sender=sender,
                    recipient=recipient,
                    subject=cfg.subject,
                    date=format_datetime(now),
                    message_id=make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2]),
                )
        except (UnsafeValue, TemplateError) as exc:
            raise WarningRefused(f"warning not rendered: {exc}") from None
        return Plan(
            offender=offender.name, offender_id=self.offender_id(offender.name), message=message
        )

    def state(self, name: str) -> WarningRow | None:
        key = self.offender_id(name)
        with self.storage.read() as tx:
            return tx.warning(self.vault.tenant, key)

    def ledger(self) -> list[WarningRow]:
        with self.storage.read() as tx:
            return tx.warnings(self.vault.tenant)

    def send(self, plan: Plan, *, retry: bool = False) -> WarningRow:
        """Claim, send and record; WarningRefused if it was already sent or is being sent."""
        msg = plan.message
        sha = hashlib.sha256(msg.raw).hexdigest()
        try:
            # The exact bytes, before anything leaves: both forms, as the server decides which.
            self.vault.blobs.put(msg.raw, sha)
            if msg.raw_7bit and msg.raw_7bit != msg.raw:
                self.vault.blobs.put(msg.raw_7bit, hashlib.sha256(msg.raw_7bit).hexdigest())
        except OSError as exc:
            raise WarningRefused(
                f"the vault cannot keep the warning, so it is not sent: {exc}"
            ) from None
        key = plan.offender_id
        with self.storage.transaction() as tx:
            earlier = tx.warning(self.vault.tenant, key)
            if earlier is not None and not (retry and earlier.state in ("sending", "failed")):
                raise WarningRefused(f"warning to {plan.offender!r}: {describe(earlier)}")
            claimed = WarningRow(
                tenant=self.vault.tenant,
                offender=key,
                state="sending",
                recipient=msg.recipient,
                message_id=msg.message_id,
                sha256=sha,
                started_at=self.clock().isoformat(),
                attempts=earlier.attempts + 1 if earlier else 1,
            )
            tx.put_warning(claimed)
        event("warning.sending", offender=plan.offender, to=msg.recipient, sha256=sha)
        try:
            reply, sent_raw = self._deliver(msg)
        except SubmitError as exc:
            done = replace(
                claimed,
                state="failed" if exc.certain else "sending",
                finished_at=self.clock().isoformat() if exc.certain else "",
                detail=str(exc),
            )
            with self.storage.transaction() as tx:
                tx.put_warning(done)
            event(
                "warning.failed",
                level=logging.ERROR,
                offender=plan.offender,
                certain=exc.certain,
                error=str(exc),
            )
            raise WarningRefused(f"warning to {plan.offender!r}: {describe(done)}") from None
        sha = hashlib.sha256(sent_raw).hexdigest()  # the form the server took
        sent = replace(
            claimed, state="sent", finished_at=self.clock().isoformat(), detail=reply, sha256=sha
        )
        with self.storage.transaction() as tx:
            tx.put_warning(sent)
        self.vault.record(
            "warning",
            {
                "offender": plan.offender,
                "offender_id": plan.offender_id,
                "to": msg.recipient,
                "from": msg.sender,
                "subject": msg.subject,
                "sent_at": sent.finished_at,
                "message_id": msg.message_id,
                "channel": msg.channel,
                "server_reply": reply,
            },
            now=self.clock(),
            sha256=sha,
        )
        event("warning.sent", offender=plan.offender, to=msg.recipient, reply=reply)
        return sent

    def _deliver(self, msg: WarningMessage) -> tuple[str, bytes]:
        """The server's reply and the bytes it took."""
        # The channels' libraries are imported at the first warning, not with the daemon: most
        # tenants never send one, and an ISP's milter has no use for slixmpp or OAuth.
        cfg = self.config
        if msg.channel == "xmpp":
            from guardmail.channels.xmpp import send

            reply = send.send_message(
                self.account(), raw=msg.raw, stanza_id=msg.message_id, recipient=msg.recipient
            )
            return reply, msg.raw
        if cfg.smtp is None:
            raise WarningRefused("channel: email needs an `smtp:` section")
        from guardmail.channels.smtp import submit

        return submit.submit_message(
            cfg.smtp, sender=msg.sender, recipient=msg.recipient, raw=msg.raw, raw_7bit=msg.raw_7bit
        )

    def held_server_blocks(self) -> frozenset[str]:
        """Offenders (names, casefolded) kept out of the server blocklist because the warning
        is still owed to them over XMPP after their first blocked item."""
        cfg = self.settings.warning
        if cfg is None or cfg.channel != "xmpp" or cfg.send != "on_first_block":
            return frozenset()
        ids = self.ids()
        with self.storage.transaction() as tx:
            done = {row.offender for row in tx.warnings(self.vault.tenant)}
        return frozenset(
            key
            for o in self.settings.offenders
            if ids.get(key := o.name.casefold(), key) not in done and o.action == "block"
        )

    def mark_sent(self, name: str, note: str) -> WarningRow:
        offender = self.offender(name)
        key = self.offender_id(offender.name)
        now = self.clock().isoformat()
        with self.storage.transaction() as tx:
            earlier = tx.warning(self.vault.tenant, key)
            if earlier is not None and earlier.state in ("sent", "marked_sent"):
                raise WarningRefused(f"warning to {offender.name!r}: {describe(earlier)}")
            row = WarningRow(
                tenant=self.vault.tenant,
                offender=key,
                state="marked_sent",
                recipient=earlier.recipient if earlier else "",
                message_id=earlier.message_id if earlier else "",
                sha256=earlier.sha256 if earlier else "",
                started_at=earlier.started_at if earlier else now,
                finished_at=now,
                detail=note,
                attempts=earlier.attempts if earlier else 0,
            )
            tx.put_warning(row)
        self.vault.record(
            "warning_marked_sent",
            {"offender": offender.name, "offender_id": key, "note": note},
            now=self.clock(),
        )
        return row

    def on_block(self, item: Item, verdict: Verdict) -> None:
        """``on_first_block``: warn the offender once, after their first archived item."""
        settings = self.settings
        if settings.warning is None or settings.warning.send != "on_first_block":
            return
        if verdict.action is Action.PASS or verdict.offender is None:
            return
        if self.state(verdict.offender) is not None:
            return  # sent, failed, or unknown: never automatically again
        why = should_not_answer(item.raw) if item.channel is Channel.MAIL else None
        if why is not None:
            event("warning.not_answering", offender=verdict.offender, reason=why)
            return
        try:
            self.send(self.plan(verdict.offender))
        except WarningRefused as exc:
            event(
                "warning.refused", level=logging.WARNING, offender=verdict.offender, reason=str(exc)
            )
