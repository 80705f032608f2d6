"""At the content filter's start: the archived messages whose SMTP session a crash cut short.

The filter journals a message's action before it answers the session, so an ``archived`` entry
without its ``action`` entry means the daemon died in between, and the session got no reply
from the filter. With a queue ID (after-queue) Postfix's retry of the same message is matched to
the entry (the vault's dedupe scope) and acts on it, which journals the action. Without one
(before-queue, ``smtp:unqueued:`` refs) nothing can match a retry to it: the sending server
keeps the message and sends it again, a new transaction with bytes of its own, archived and
acted on apart. So each such entry gets its action entry here (``pipeline.reconcile``): not
delivered by that session, and where its quarantine copy went if the next hop took one before
the crash (recorded under the arrival's own key, ``Arrival.record_key``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from guardmail.channels.smtp.relayed import RelayedCopies
from guardmail.errors import VaultUnavailable
from guardmail.logs import event
from guardmail.pipeline import Pipeline
from guardmail.storage.base import StorageUnavailable

PREFIX = "smtp:unqueued:"
CUT = (
    "not delivered: the SMTP session ended without the filter's reply (the daemon stopped), "
    "so the sending server kept the message and sends it again"
)


def where_now(relayed: RelayedCopies, body: dict[str, Any]) -> str | None:
    """For ``Pipeline.reconcile``: what became of an unanswered archived message of this filter
    without a queue ID; None for any other entry (not the filter's, or a retry will answer it)."""
    ref, sha = body.get("source_ref"), body.get("sha256")
    if not isinstance(ref, str) or not ref.startswith(PREFIX) or not isinstance(sha, str):
        return None
    copies = relayed.get((f"unqueued:{ref.removeprefix(PREFIX)}", sha))
    boxes = sorted(c.removeprefix("quarantine:") for c in copies if c.startswith("quarantine:"))
    if boxes:
        return f"{CUT}; its copy was delivered to quarantine mailbox {', '.join(boxes)} first"
    return CUT


async def answer_unanswered(pipelines: Iterable[Pipeline], relayed: RelayedCopies) -> None:
    """Journal the action of every such entry, tenant by tenant; log, never raise."""
    for pipeline in pipelines:
        try:
            await pipeline.reconcile(lambda body: where_now(relayed, body))
        except (VaultUnavailable, StorageUnavailable) as exc:
            event(
                "smtp_filter.reconcile_failed",
                level=logging.ERROR,
                tenant=pipeline.vault.tenant,
                error=str(exc),
            )
