"""SMTP content filter beside Postfix: each recipient judged by its own tenant, nothing lost.

Postfix hands a message to ``listen`` (after-queue: ``content_filter``; before-queue:
``smtpd_proxy_filter``); guardmail re-injects what may pass into ``next_hop`` unchanged. An
aiosmtpd server (``wire``) runs in the daemon's own loop; re-injection is ``relay``.

Contracts, for every message:
- Each recipient is routed to its tenant (``tenants.d``, see ``guardmail.config.tenants``);
  a recipient of no tenant is judged by the main config's offenders when the daemon passes a
  ``fallback`` (``daemon.tenants.MainRecipients``: no quarantine mailbox, so its protected
  copies are archived only), else it is clean. Each tenant with recipients judges the message
  once, with its own rules, through its own ``Pipeline.process``: archived in that tenant's vault
  only, with that tenant's recipients only in the evidence. Clean copies are relayed;
  quarantined ones are archived and, if the tenant has a ``quarantine_mailbox``, delivered there
  unchanged (with the null sender, so nothing can ever bounce to the offender); blocked ones are
  archived and not delivered.
- 250 only once every recipient's fate is durable: relayed (the next hop answered 250) or
  archived. A vault failure, a next hop that is down or answers 4xx, or any bug: ``451 4.3.0``,
  and Postfix keeps the message queued and retries it.
- Offender tenants go first (archive, then the quarantine copy), then one all-or-nothing
  transaction for every clean recipient, so a vault failure never leaves clean copies delivered
  that the retry would deliver again. Redelivery is at-least-once: the vault archives the same
  bytes once per queue ID (``dedupe_scope``), and copies the next hop took are remembered per
  queue ID and bytes (``RelayedCopies``, committed before Postfix is answered), so a
  retry after a partial failure or a crash skips them: a recipient whose copy was relayed is done
  (not judged again), a tenant that archived and acted on the message is not asked again (its
  journal is read only when its rules would act now: clean mail never waits for that read, and
  a retry after the offender was removed is delivered, as in the milter). What is
  left is RFC 1047's window, between the next hop's 250 and that commit (a few milliseconds; the
  ``smtp_filter.message`` event's ``unrecorded_ms``): a crash inside it delivers a copy twice,
  and so may a retry after a power loss (not a crash: relayed.py's trade-off).
  Before-queue there is no queue ID: a session a crash cut short leaves the sender without a
  reply, and its next attempt is a new message here (archived and relayed again: the window
  runs from the next hop's 250 to the reply). An archive the crash left without its action
  entry gets one at the next start (``unanswered``).
- After-queue never answers 5xx to offender mail (no backscatter): a block is silent. Before-queue
  answers ``550 5.7.1`` while the sender is connected when every recipient blocks the message
  (archived first); with some recipients clean, they get it and the blocking ones do not.
- A permanent refusal by the next hop of clean mail is passed on (Postfix bounces it as it would
  without guardmail), except after-queue for offender mail (logged, answered 250). Refusals of
  some clean recipients but not others cannot be told apart in one SMTP reply: 451, so that
  nothing is lost (FILTER_README's re-injection smtpd accepts every recipient anyway).
- The evidence keeps the envelope (MAIL FROM, this tenant's RCPT TO, MAIL parameters), Postfix's
  queue ID (XFORWARD IDENT, else the topmost Received header) and the client from XFORWARD.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from guardmail import faults
from guardmail.channels.smtp.arrival import Arrival, Fates
from guardmail.channels.smtp.handler import FilterHandler
from guardmail.channels.smtp.relay import (
    NextHop,
    NextHopUnavailable,
    Outgoing,
    Relayed,
)
from guardmail.channels.smtp.relayed import RelayedCopies
from guardmail.channels.smtp.tenants import RecipientTenant, Tenants
from guardmail.channels.smtp.unanswered import answer_unanswered
from guardmail.channels.smtp.wire import FilterEnvelope, FilterSMTP, queue_id
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action, Verdict
from guardmail.errors import GuardmailError, StateError, VaultUnavailable
from guardmail.logs import event
from guardmail.storage.base import StorageUnavailable

REFUSED = "550 5.7.1 Message refused by the recipient's protection"


class Deferred(GuardmailError):
    """The next hop answered 4xx, or refused only some recipients: retry the whole message."""


class _Act:
    """The pipeline's Actor for one tenant's copy of one message."""

    def __init__(
        self,
        source: SmtpFilterSource,
        message: Arrival,
        routed: RecipientTenant,
        recipients: Sequence[str],
        *,
        refuse_all: bool,
    ) -> None:
        self.source = source
        self.message = message
        self.routed = routed
        self.recipients = recipients
        self.refuse_all = refuse_all

    async def act(self, item: Item, verdict: Verdict) -> str:
        rcpts = ", ".join(self.recipients)
        mailbox = self.routed.quarantine_mailbox
        if verdict.action is Action.BLOCK or mailbox is None:
            if self.refuse_all:
                return f"refused with 550 during the SMTP session; not delivered to {rcpts}"
            kept = "blocked" if verdict.action is Action.BLOCK else "no quarantine_mailbox"
            return f"archived only ({kept}); not delivered to {rcpts}, nothing bounced"
        return await self.source.quarantine(self.message, mailbox, rcpts)


class SmtpFilterSource:
    """The content filter: an SMTP server in the daemon's loop, and its tenants."""

    def __init__(
        self,
        *,
        cfg: SmtpFilterConfig,
        tenants: Tenants,
        relayed: RelayedCopies,
        fallback: RecipientTenant | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.tenants = tenants
        self.fallback = fallback
        self.clock = clock
        host, port = cfg.next_hop_address
        self.next_hop = NextHop(host, port, helo=cfg.hostname, timeout=cfg.timeout_seconds)
        self._remembered = relayed
        self._connections: weakref.WeakSet[FilterSMTP] = weakref.WeakSet()
        self._locks: dict[str, asyncio.Lock] = {}

    def reload_tenants(self) -> bool:
        """Re-read tenants.d (the daemon's SIGHUP); a bad file keeps the last good tenants."""
        return self.tenants.reload()

    def _protocol(self) -> FilterSMTP:
        proto = FilterSMTP(
            FilterHandler(self.handle),
            hostname=self.cfg.hostname,
            ident="guardmail",
            enable_SMTPUTF8=True,
            data_size_limit=None,
            timeout=self.cfg.timeout_seconds,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(proto)
        return proto

    async def run(self) -> None:
        """Serve until cancelled, re-reading tenants.d when it changes."""
        # Before listening: the sessions a crash cut between an archive and its action.
        tenants = [self.tenants.tenant(n) for n in self.tenants.names]
        pipelines = [t.pipeline for t in (*tenants, self.fallback) if t is not None]
        await answer_unanswered(pipelines, self._remembered)
        host, port = self.cfg.listen_address
        server = await asyncio.get_running_loop().create_server(self._protocol, host, port)
        event(
            "smtp_filter.listening",
            listen=self.cfg.listen,
            next_hop=self.cfg.next_hop,
            mode=self.cfg.mode,
            tenants=len(self.tenants.names),
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.tenants.watch())
                group.create_task(server.serve_forever())
        finally:
            server.close()
            for proto in list(self._connections):
                if proto.transport is not None:
                    proto.transport.close()
            await self.next_hop.aclose()

    def close(self) -> None:
        """Close the tenants' state (at daemon exit; ``run`` may be started again before)."""
        self.tenants.close()
        self._remembered.close()

    async def handle(self, envelope: FilterEnvelope) -> str:
        """The SMTP reply to one message; see the module contracts."""
        began = time.monotonic()
        message = self._message(envelope)
        fates = Fates()
        try:
            reply = await self._handle(message, fates)
        except (VaultUnavailable, StorageUnavailable) as exc:
            reply = "451 4.3.0 Evidence vault unavailable, try again later"
            event("smtp_filter.vault_unavailable", level=logging.ERROR, error=str(exc))
        except (NextHopUnavailable, Deferred) as exc:
            reply = "451 4.3.0 Next hop unavailable, try again later"
            event("smtp_filter.next_hop_failed", level=logging.WARNING, error=str(exc))
        except Exception:
            logging.getLogger("guardmail").exception(
                "smtp_filter.error", extra={"gm_fields": {"queue_id": message.queue_id}}
            )
            reply = "451 4.3.0 Internal error in the content filter, try again later"
        event(
            "smtp_filter.message",
            queue_id=message.queue_id,
            recipients=len(envelope.rcpt_tos),
            relayed=len(fates.relayed),
            archived=",".join(f"{t}:{a}" for t, a in fates.archived.items()),
            size=len(message.raw),
            reply=reply[:3],
            ms=round((time.monotonic() - began) * 1000, 1),
            unrecorded_ms=round(message.unrecorded_ms, 1),
        )
        faults.reached("smtp.replied")
        return reply

    def _message(self, envelope: FilterEnvelope) -> Arrival:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        qid = queue_id(envelope.xforward, raw)
        sender = envelope.mail_from or ""
        return Arrival(
            envelope=envelope,
            raw=raw,
            queue_id=qid,
            key=(qid, hashlib.sha256(raw).hexdigest()) if qid else None,
            outgoing=Outgoing(
                sender="" if sender == "<>" else sender,
                data=envelope.wire,
                eight_bit="BODY=8BITMIME" in envelope.mail_options,
                smtputf8=bool(envelope.smtp_utf8),
                xforward=dict(envelope.xforward),
                dsn_mail=envelope.dsn_mail,
                dsn_rcpt=dict(envelope.dsn_rcpt),
            ),
            received_at=self.clock(),
        )

    async def _handle(self, message: Arrival, fates: Fates) -> str:
        clean: list[str] = []
        groups: dict[str, tuple[RecipientTenant, list[str]]] = {}
        # A retry: recipients whose copy the next hop took at an earlier attempt are done, even
        # if a rule added since would judge them otherwise (judging again could only duplicate).
        done = message.remembered = await self._remembered.look_up(message.key)
        for rcpt in message.envelope.rcpt_tos:
            routed = self._route(rcpt)
            if routed is None or f"rcpt:{rcpt}" in done:
                clean.append(rcpt)
            else:
                groups.setdefault(routed.name, (routed, []))[1].append(rcpt)
        items = {
            name: mail_item(
                message.raw,
                tenant=name,
                account=", ".join(rcpts),
                source_ref=message.ref,
                received_at=message.received_at,
                envelope_sender=message.outgoing.sender or None,
                meta=message.meta(rcpts, self.cfg.mode),
                dedupe_scope=message.ref if message.queue_id else None,
            )
            for name, (_, rcpts) in groups.items()
        }
        verdicts = {n: r.pipeline.judge(items[n]) for n, (r, _) in groups.items()}
        refuse_all = (
            self.cfg.mode == "before_queue"
            and not clean
            and all(v.action is Action.BLOCK for v in verdicts.values())
        )
        for name, (routed, rcpts) in groups.items():
            if verdicts[name].action is Action.PASS:
                # Clean mail (most of a tenant's) goes on at once, as in the milter: no journal
                # look-up, no wait for the tenant's lock behind another message's archive. A
                # retry of a message this tenant acted on before a crash is judged the same,
                # unless its offender was removed since: then it is delivered.
                clean += rcpts
                continue
            actor = _Act(self, message, routed, rcpts, refuse_all=refuse_all)
            # One message at a time per tenant, as in the milter (milter.py says why): the
            # journal look-up and the archive after it must not interleave with another
            # attempt at the same bytes, and the tenant's alias linker learns unlocked.
            async with self._locks.setdefault(name, asyncio.Lock()):
                handled = await self._handled_before(message, routed)
                if handled is not None:
                    fates.archived[name] = handled
                    continue
                outcome = await routed.pipeline.process(items[name], actor)
            if outcome.verdict.action is Action.PASS:
                clean += rcpts
            else:
                fates.archived[name] = outcome.verdict.action
        if refuse_all and not clean and all(a is Action.BLOCK for a in fates.archived.values()):
            return REFUSED  # (a reload in between may have changed a verdict: checked again)
        passed = set(clean)
        in_order = [r for r in message.envelope.rcpt_tos if r in passed]
        return await self._relay_clean(message, in_order, fates, done)

    def _route(self, recipient: str) -> RecipientTenant | None:
        routed = self.tenants.route(recipient)
        if routed is not None:
            return routed
        fallback = self.fallback  # the main config: without offenders, nobody to protect from
        return fallback if fallback is not None and fallback.pipeline.rules.offenders else None

    async def _handled_before(self, message: Arrival, routed: RecipientTenant) -> Action | None:
        """The action this tenant took on this very message (queue ID and bytes) at an earlier
        attempt whose reply a crash cut off; None if it has not acted on it yet."""
        if message.key is None:
            return None
        vault = routed.pipeline.vault
        done = await asyncio.to_thread(vault.acted, message.key[1], message.ref)
        if done is None:
            return None
        event("smtp_filter.handled_before", queue_id=message.queue_id, tenant=routed.name)
        return Action(done)

    async def _remember(
        self, message: Arrival, copies: list[str], key: tuple[str, str] | None = None
    ) -> None:
        """Record the copies the next hop just took, durably, before Postfix hears anything. If
        the database cannot, say so and go on: the copies are delivered; only a retry of this
        message would send them again."""
        began = time.monotonic()
        try:
            await self._remembered.remember(key or message.key, copies)
            took = (time.monotonic() - began) * 1000
            message.unrecorded_ms = max(message.unrecorded_ms, took)
        except (StorageUnavailable, StateError) as exc:
            event(
                "smtp_filter.relayed_unrecorded",
                level=logging.ERROR,
                queue_id=message.queue_id,
                copies=len(copies),
                error=str(exc),
            )

    async def _relay_clean(
        self, message: Arrival, clean: list[str], fates: Fates, done: set[str]
    ) -> str:
        todo = [r for r in clean if f"rcpt:{r}" not in done]
        if todo:
            relayed = await self.next_hop.send(message.outgoing, todo)
            if not relayed.delivered:
                return self._refused(message, relayed, todo, fates)
            await self._remember(message, [f"rcpt:{r}" for r in todo])
            faults.reached("smtp.relayed")
        fates.relayed = clean
        return f"250 2.0.0 Ok: {len(clean)} relayed, {len(fates.archived)} tenant(s) archived"

    def _refused(self, message: Arrival, relayed: Relayed, todo: list[str], fates: Fates) -> str:
        if not relayed.reply.permanent or any(not r.permanent for r in relayed.refused.values()):
            raise Deferred(f"next hop {self.next_hop} deferred: {relayed.reply}")
        if len(relayed.refused) < len(todo):
            raise Deferred(
                f"next hop {self.next_hop} refused {len(relayed.refused)} of {len(todo)} "
                f"recipients permanently ({relayed.reply}); one reply cannot say which"
            )
        if fates.archived and self.cfg.mode == "after_queue":
            event(
                "smtp_filter.clean_copies_refused",
                level=logging.ERROR,
                queue_id=message.queue_id,
                reply=str(relayed.reply),
                detail="offender mail: not bounced",
            )
            return "250 2.0.0 Ok: archived; the next hop refused the other copies"
        return str(relayed.reply)

    async def quarantine(self, message: Arrival, mailbox: str, recipients: str) -> str:
        """Deliver the quarantined copy, unchanged, to ``mailbox`` (with the null sender)."""
        if f"quarantine:{mailbox}" in message.remembered:  # read at the message's start
            return f"already delivered to quarantine mailbox {mailbox} (retry)"
        copy = Outgoing(
            sender="",
            data=message.outgoing.data,
            eight_bit=message.outgoing.eight_bit,
            smtputf8=message.outgoing.smtputf8,
            xforward=message.outgoing.xforward,
        )
        relayed = await self.next_hop.send(copy, [mailbox])
        if relayed.delivered:
            # Without a queue ID too: a restart says where an unanswered session's copy went.
            await self._remember(message, [f"quarantine:{mailbox}"], message.record_key)
            if message.key is not None:  # another tenant of this message with the same mailbox
                message.remembered.add(f"quarantine:{mailbox}")
            faults.reached("smtp.quarantined")
            return f"delivered to quarantine mailbox {mailbox} instead of {recipients}"
        if not relayed.reply.permanent:
            raise Deferred(f"quarantine mailbox {mailbox}: next hop answered {relayed.reply}")
        event(
            "smtp_filter.quarantine_refused",
            level=logging.ERROR,
            mailbox=mailbox,
            reply=str(relayed.reply),
        )
        return f"archived; quarantine mailbox {mailbox} refused it: {relayed.reply}"
