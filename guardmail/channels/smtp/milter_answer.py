"""The milter's answer at the end of a message, from each tenant's outcome (milter.py judges).

Contracts:
- Some recipients clean, or a ``quarantine_mailbox`` to add: remove each protected recipient
  (SMFIR_DELRCPT), add each quarantine mailbox once (SMFIR_ADDRCPT, or SMFIR_ADDRCPT_PAR with
  NOTIFY=NEVER where the MTA offers it: a failed delivery to the quarantine mailbox must not
  bounce to the offender), continue. Every recipient protected and nothing to add: ``550
  5.7.1`` when every tenant blocks, else DISCARD (archived, delivered nowhere, no bounce).
- ``Removed`` does nothing itself: the removal is this answer, sent only after every tenant's
  pipeline has archived (fsync'd) the message; its text is the action entry journaled with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from guardmail.channels.smtp import milter_codec as mc
from guardmail.channels.smtp.tenants import RecipientTenant
from guardmail.core.item import Item
from guardmail.core.rules import Action, Verdict

REFUSED = "550 5.7.1 Message refused by the recipient's protection"
CONTINUE = mc.packet(mc.R_CONTINUE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    routed: RecipientTenant
    recipients: list[bytes]  # as in RCPT TO

    @property
    def addresses(self) -> list[str]:
        return [mc.unbracket(r).decode("utf-8", "surrogateescape") for r in self.recipients]


class Removed:
    """The pipeline's Actor: the removal itself is the answer sent after every tenant is done."""

    # The answer waits for the archive and the action entry to be committed (together: see
    # ``describe``), not for the HEAD witness after them (two more fsyncs; it may lag the
    # journal, never lead it).
    wait_witness = False

    def __init__(self, group: Group) -> None:
        self.group = group

    async def act(self, item: Item, verdict: Verdict) -> str:
        return self.describe(item, verdict)

    def describe(self, item: Item, verdict: Verdict) -> str:
        """The action entry's text. Nothing is done before the answer leaves, so the pipeline
        commits this entry with the archived one, in one transaction: an offender's message
        waits for one commit (blobs, then the journal), not for two."""
        rcpts = ", ".join(self.group.addresses)
        mailbox = self.group.routed.quarantine_mailbox
        if verdict.action is Action.QUARANTINE and mailbox is not None:
            return f"milter: removed {rcpts}; the quarantine mailbox {mailbox} added instead"
        return f"milter: removed {rcpts} (discarded, or refused with 550 if no one else is left)"


def answer(
    groups: Sequence[tuple[Group, Action]], clean: Sequence[bytes], *, notify_never: bool = False
) -> bytes:
    """The end-of-message answer for the tenants' outcomes (see the module contracts).

    ``notify_never`` (the MTA takes SMFIR_ADDRCPT_PAR): each quarantine mailbox is added with
    ``NOTIFY=NEVER``, so that a failed delivery to it bounces to no one, least of all the
    offender, who is still the envelope sender (the other recipients' copies keep it).
    """
    protected = [(g, a) for g, a in groups if a is not Action.PASS]
    if not protected:
        return CONTINUE
    mailboxes = dict.fromkeys(
        g.routed.quarantine_mailbox
        for g, a in protected
        if a is Action.QUARANTINE and g.routed.quarantine_mailbox is not None
    )
    if not clean and not mailboxes:
        if all(a is Action.BLOCK for _, a in protected):
            return mc.reply_code(REFUSED)
        return mc.packet(mc.R_DISCARD)
    edits = [mc.recipient_action(mc.R_DELRCPT, r) for g, _ in protected for r in g.recipients]
    add, args = (mc.R_ADDRCPT_PAR, b"NOTIFY=NEVER") if notify_never else (mc.R_ADDRCPT, b"")
    edits += [
        mc.recipient_action(add, b"<" + m.encode("utf-8", "surrogateescape") + b">", args)
        for m in mailboxes
        if m is not None
    ]
    return b"".join([*edits, CONTINUE])
