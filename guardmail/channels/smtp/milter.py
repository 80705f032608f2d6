"""guardmail as a Postfix milter (``smtpd_milters``, ``non_smtpd_milters``), in the daemon's loop.

Postfix hands each message's envelope, headers and body to the milter while the client is still
connected (``smtpd_milters``) or while pickup takes a local submission (``non_smtpd_milters``);
nothing is queued twice, unlike the after-queue filter. The wire format is
``milter_codec``, the answer ``milter_answer``; this module routes and judges.

Contracts, at the end of each message:
- Each recipient is routed to its tenant (``tenants.d``); a recipient of no tenant is judged by
  the main config's offenders when the daemon passes a ``fallback``, else it is clean. Each
  tenant with recipients judges the message once, through its own ``Pipeline.process``: archived
  (fsync'd) in that tenant's vault before any answer leaves, with that tenant's recipients only
  in the evidence.
- The answer, once every tenant is done, is ``milter_answer.answer``: protected recipients
  removed (quarantine mailboxes added), ``550 5.7.1`` or DISCARD when no one is left.
- Mail for no protected recipient (known at the end of the headers) is counted, not kept: its
  body is dropped as it arrives. Should a reload protect one of its recipients before its end,
  it is answered ``451 4.3.0`` and retried whole; nothing is archived in part.
- Archiving is at-least-once per attempt, deduplicated by content: the same bytes from the same
  envelope sender to the same recipients of a tenant are archived once, whatever the queue ID
  (each retry after a 451 or a crash gets a new one); once acted on, such a retry is answered
  as the journaled action says, with no second action entry.
- A vault failure or any bug: ``451 4.3.0`` (SMFIR_REPLYCODE): Postfix refuses the message for
  now, the client (or pickup) keeps it and retries. The daemon down: Postfix applies
  ``milter_default_action``, which must be ``tempfail`` (plugins/postfix/README.md).
- The archived bytes are the message as Postfix holds it (``Message.raw``): equal to what the
  after-queue filter archives, except where ``milter_codec`` says.
- A protocol violation or an oversized packet drops that connection only; other connections
  and the daemon go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from guardmail import faults
from guardmail.channels.smtp import milter_codec as mc
from guardmail.channels.smtp.milter_answer import CONTINUE, Group, Removed, answer
from guardmail.channels.smtp.tenants import RecipientTenant, Tenants
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action
from guardmail.errors import GuardmailError, VaultUnavailable
from guardmail.logs import event

READ_SIZE = 1 << 16
VAULT_DOWN = "451 4.3.0 Evidence vault unavailable, try again later"
INTERNAL = "451 4.3.0 Internal error in the mail filter, try again later"
CHANGED = "451 4.3.0 Protection changed during the message, try again"


class _Changed(GuardmailError):
    """Tenants were reloaded between the envelope and the end of a message: retry it whole."""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


class MilterSource:
    """The milter: a Unix-socket or TCP server in the daemon's loop, and its tenants."""

    def __init__(
        self,
        *,
        cfg: SmtpFilterConfig,
        tenants: Tenants,
        fallback: RecipientTenant | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.tenants = tenants
        self.fallback = fallback
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._writers: set[asyncio.StreamWriter] = set()

    def reload_tenants(self) -> bool:
        """Re-read tenants.d (the daemon's SIGHUP); a bad file keeps the last good tenants."""
        return self.tenants.reload()

    def close(self) -> None:
        """Close the tenants' state (at daemon exit)."""
        self.tenants.close()

    async def _start(self) -> asyncio.Server:
        path = self.cfg.listen_unix
        if path is None:
            host, port = self.cfg.listen_address
            return await asyncio.start_server(self._serve, host, port, limit=READ_SIZE)
        with contextlib.suppress(FileNotFoundError):
            if path.is_socket():
                path.unlink()  # a stale socket of an earlier run; anything else stays an error
        server = await asyncio.start_unix_server(self._serve, path, limit=READ_SIZE)
        # Only the MTA may hand us mail to archive as evidence: owner and socket_group.
        os.chmod(path, 0o660)
        if self.cfg.socket_group is not None:
            shutil.chown(path, group=self.cfg.socket_group)
        return server

    async def run(self) -> None:
        """Serve until cancelled, re-reading tenants.d when it changes."""
        server = await self._start()
        event(
            "smtp_filter.listening",
            listen=self.cfg.listen,
            mode=self.cfg.mode,
            tenants=len(self.tenants.names),
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.tenants.watch())
                group.create_task(server.serve_forever())
        finally:
            server.close()
            for writer in list(self._writers):
                writer.close()
            if self.cfg.listen_unix is not None:
                with contextlib.suppress(OSError):
                    self.cfg.listen_unix.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._session(reader, writer)
        except (mc.ProtocolViolation, ConnectionError) as exc:
            event("smtp_filter.milter_dropped", level=logging.WARNING, error=str(exc))
        except Exception:  # a bug: this connection ends (Postfix tempfails), the daemon goes on
            logging.getLogger("guardmail").exception("smtp_filter.error", extra={"gm_fields": {}})
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = mc.Decoder()
        options: mc.Options | None = None
        message = mc.Message()
        seen: dict[bytes, bytes] = {}  # macros, for the connection: Postfix sends them per stage
        helo = b""  # the client's HELO name, for the connection
        sock = writer.get_extra_info("socket")
        tcp = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        while True:
            if tcp:
                # We answer only at the end of a message, so Postfix's small writes would wait
                # for our delayed ACK (Nagle on its side): ~40 ms a message. ACK at once.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            data = await reader.read(READ_SIZE)
            if not data:
                return
            out: list[bytes] = []
            for p in decoder.feed(data):
                command = p.command
                if command == mc.OPTNEG:
                    options, reply = mc.negotiate(p.data)
                    out.append(reply)
                    continue
                if options is None:
                    raise mc.ProtocolViolation(f"command {chr(command)!r} before OPTNEG")
                if command == mc.MACRO:
                    seen.update(mc.macros(p.data))
                elif command == mc.HELO:
                    helo = (mc.cstrings(p.data) or [b""])[0]
                elif command == mc.MAIL:
                    args = mc.cstrings(p.data)
                    message = mc.Message()
                    message.sender, message.sender_args = (args or [b""])[0], args[1:]
                elif command == mc.RCPT:
                    message.recipients.append((mc.cstrings(p.data) or [b""])[0])
                elif command == mc.HEADER:
                    message.header(p.data)
                elif command == mc.EOH:
                    # Mail for no protected recipient (most of an ISP's): its body is not kept.
                    message.keep_body = any(self._route(r) for r in message.recipients)
                elif command == mc.BODY:
                    message.chunk(p.data)
                elif command == mc.BODYEOB:
                    if p.data:
                        message.chunk(p.data)
                    message.macros = dict(seen)
                    message.helo = helo
                    par = bool(options.actions & mc.F_ADDRCPT_PAR)
                    out.append(await self.end_of_message(message, notify_never=par))
                    message = mc.Message()
                    continue
                elif command == mc.ABORT:
                    message = mc.Message()
                elif command == mc.QUIT:
                    writer.write(b"".join(out))
                    return
                elif command == mc.QUIT_NC:
                    message, seen, helo = mc.Message(), {}, b""
                if options.answered(command):
                    out.append(CONTINUE)
            if out:
                writer.write(b"".join(out))
                await writer.drain()

    async def end_of_message(self, message: mc.Message, *, notify_never: bool = False) -> bytes:
        """The answer to one message; see the module contracts. Never raises."""
        began = time.monotonic()
        queue_id = _text(message.macros.get(b"i", b"")) or None
        outcomes: list[tuple[Group, Action]] = []
        try:
            reply, clean = await self._judge(message, queue_id, outcomes, notify_never)
        except VaultUnavailable as exc:
            reply, clean = mc.reply_code(VAULT_DOWN), []
            event("smtp_filter.vault_unavailable", level=logging.ERROR, error=str(exc))
        except _Changed as exc:
            reply, clean = mc.reply_code(CHANGED), []
            event("smtp_filter.retry", level=logging.WARNING, error=str(exc))
        except Exception:
            logging.getLogger("guardmail").exception(
                "smtp_filter.error", extra={"gm_fields": {"queue_id": queue_id}}
            )
            reply, clean = mc.reply_code(INTERNAL), []
        event(
            "smtp_filter.message",
            queue_id=queue_id,
            recipients=len(message.recipients),
            clean=len(clean),
            archived=",".join(f"{g.routed.name}:{a}" for g, a in outcomes if a is not Action.PASS),
            size=message.size,
            reply=chr(reply[4]) if reply[4] != mc.R_REPLYCODE else reply[5:8].decode(),
            mode="milter",
            ms=round((time.monotonic() - began) * 1000, 1),
        )
        faults.reached("milter.replied")
        return reply

    def _route(self, recipient: bytes) -> RecipientTenant | None:
        routed = self.tenants.route(_text(mc.unbracket(recipient)))
        if routed is not None:
            return routed
        fallback = self.fallback  # the main config: without offenders, nobody to protect from
        return fallback if fallback is not None and fallback.pipeline.rules.offenders else None

    async def _judge(
        self,
        message: mc.Message,
        queue_id: str | None,
        outcomes: list[tuple[Group, Action]],
        notify_never: bool,
    ) -> tuple[bytes, list[bytes]]:
        clean: list[bytes] = []
        groups: dict[str, Group] = {}
        for rcpt in message.recipients:
            routed = self._route(rcpt)
            if routed is None:
                clean.append(rcpt)
            else:
                groups.setdefault(
                    routed.name, Group(routed=routed, recipients=[])
                ).recipients.append(rcpt)
        if not groups:
            return CONTINUE, clean
        if message.body_dropped:  # a tenant added for a recipient during this very message
            raise _Changed("a recipient became protected during the message; try again")
        raw = message.raw()
        sender = _text(mc.unbracket(message.sender))
        ref = f"smtp:{queue_id}" if queue_id else f"smtp:unqueued:{os.urandom(8).hex()}"
        received_at = self.clock()
        for name, group in groups.items():
            item = mail_item(
                raw,
                tenant=name,
                account=", ".join(group.addresses),
                source_ref=ref,
                received_at=received_at,
                envelope_sender=sender or None,
                meta=self._meta(message, group, sender, queue_id),
                # A retry gets a new queue ID (the client's or pickup's next attempt): the same
                # bytes from the same sender to the same recipients archive once.
                dedupe_scope=f"milter:{sender}>{','.join(group.addresses)}",
            )
            pipeline = group.routed.pipeline
            # Clean mail (most of a tenant's) is answered at once: no journal look-up, no wait
            # for the tenant's lock. A retry of a message acted on before a crash is judged
            # the same (unless the offender was removed since: then it is delivered).
            if pipeline.judge(item).action is Action.PASS:
                action = Action.PASS
            else:
                # One message at a time per tenant. Not for the vault's files (its temp names
                # are per process and thread, and one committer writes HEAD): the journal
                # look-up and the archive after it must not interleave with another attempt
                # at the same bytes (a retry while the first is still in flight), or both
                # would find no action and journal one each; and the tenant's alias linker
                # learns in worker threads without a lock of its own (its index is built and
                # added to there). A lock per content would let one tenant's different
                # messages share a group commit; not before the linker is made safe for it.
                async with self._locks.setdefault(name, asyncio.Lock()):
                    before = await self._handled_before(item, group)
                    if before is None:
                        action = (await pipeline.process(item, Removed(group))).verdict.action
                    else:
                        action = before
            outcomes.append((group, action))
            if action is Action.PASS:
                clean += group.recipients
        return answer(outcomes, clean, notify_never=notify_never), clean

    @staticmethod
    async def _handled_before(item: Item, group: Group) -> Action | None:
        """The action journaled for these bytes in this scope by an attempt a crash cut off
        before its answer (None if none): the retry answers the same, and journals nothing
        again (each archived entry has one action entry)."""
        vault = group.routed.pipeline.vault
        sha = hashlib.sha256(item.raw).hexdigest()
        done = await asyncio.to_thread(vault.acted, sha, str(item.dedupe_scope))
        if done is None:
            return None
        event("smtp_filter.handled_before", tenant=group.routed.name, action=done)
        return Action(done)

    @staticmethod
    def _meta(
        message: mc.Message, group: Group, sender: str, queue_id: str | None
    ) -> tuple[tuple[str, str], ...]:
        pairs = (
            ("mail_from", sender),
            ("rcpt_to", ", ".join(group.addresses)),
            ("mail_options", " ".join(_text(a) for a in message.sender_args)),
            ("queue_id", queue_id or ""),
            ("client", _text(message.macros.get(b"_", b""))),
            ("helo", _text(message.helo)),
            ("mode", "milter"),
        )
        return tuple((k, v) for k, v in pairs if v)
