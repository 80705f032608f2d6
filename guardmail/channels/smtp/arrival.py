"""One message on its way through the content filter (``filter``), and its recipients' fates."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from guardmail.channels.smtp.relay import Outgoing
from guardmail.channels.smtp.wire import FilterEnvelope, xtext_decode
from guardmail.core.rules import Action


@dataclass(slots=True, kw_only=True)
class Fates:
    """What happened to one message's recipients, for the reply and the log line."""

    relayed: list[str] = field(default_factory=list)
    archived: dict[str, Action] = field(default_factory=dict)  # tenant -> quarantine/block


@dataclass(slots=True, kw_only=True)
class Arrival:
    """One message on its way through the filter."""

    envelope: FilterEnvelope
    raw: bytes
    queue_id: str | None
    key: tuple[str, str] | None  # (queue ID, SHA-256): for RelayedCopies and Vault.acted
    outgoing: Outgoing
    received_at: datetime

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The copies an earlier attempt had relayed (RelayedCopies.get), read once per message.
    remembered: set[str] = field(default_factory=set)
    # The longest time between the next hop's 250 and its record committed: a crash then makes
    # Postfix retry, and that copy is delivered again (RFC 1047's window, moved here).
    unrecorded_ms: float = 0.0

    @property
    def record_key(self) -> tuple[str, str]:
        """Where the copies the next hop took are recorded: ``key``; without a queue ID, this
        arrival's own key, read back only at a restart (``unanswered``), never by a retry."""
        if self.key is not None:
            return self.key
        return (f"unqueued:{self.token}", hashlib.sha256(self.raw).hexdigest())

    @property
    def ref(self) -> str:
        """``smtp:QUEUEID``; without one (before-queue), unique to this arrival."""
        return f"smtp:{self.queue_id}" if self.queue_id else f"smtp:unqueued:{self.token}"

    def meta(self, recipients: Sequence[str], mode: str) -> tuple[tuple[str, str], ...]:
        xf = {k: xtext_decode(v) for k, v in self.envelope.xforward.items()}
        client = f"{xf.get('NAME', '')}[{xf.get('ADDR', '')}]" if "ADDR" in xf else ""
        pairs = (
            ("mail_from", self.outgoing.sender),
            ("rcpt_to", ", ".join(recipients)),
            ("mail_options", " ".join(self.envelope.mail_options)),
            ("queue_id", self.queue_id or ""),
            ("client", client),
            ("helo", xf.get("HELO", "")),
            ("protocol", xf.get("PROTO", "")),
            ("mode", mode),
        )
        return tuple((k, v) for k, v in pairs if v)
