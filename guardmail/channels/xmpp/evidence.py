"""What is kept of a received stanza: an Item with its bytes as delivered and where they came from.

``source_ref`` is ``xmpp:<account>:<stanza-id>`` when the server gave a stanza-id (live, carbon
and archive paths then meet on one id), else ``xmpp:<account>:<stream id>:<offset>``; the dedupe
scope is the account (``xmpp:<account>``), so identical bytes are archived once. ``meta`` keeps
the stream header (namespace context), the server certificate's SHA-256, the stream offset, the
message id and server stanza-id (XEP-0359), and for archive results says what the bytes are.
"""

from __future__ import annotations

from typing import Any

from guardmail.channels.xmpp.client import Received
from guardmail.channels.xmpp.stanza import Incoming, Via
from guardmail.core.item import Channel, Item

MAM_EVIDENCE = (
    "archive query result as delivered: the forwarded message inside is the server's "
    "archived copy, not the original delivery"
)


def stanza_item(
    got: Received, incoming: Incoming, *, source: str, tenant: str, account: str
) -> Item:
    """The Item for one received stanza: its bytes as delivered, and the facts kept beside them."""
    ctx, piece = got.context, got.piece
    if incoming.stanza_id is not None:
        ref = f"{source}:{incoming.stanza_id}"
    else:
        ref = f"{source}:{ctx.stream_id or f'c{ctx.connection}'}:{piece.offset}"
    meta: list[tuple[str, str]] = [
        ("via", str(incoming.via)),
        ("from", incoming.sender),
        ("stream_header", ctx.header.decode("utf-8", "replace")),
        ("stream_id", ctx.stream_id),
        ("stream_offset", str(piece.offset)),
        ("server_cert_sha256", ctx.cert_sha256),
    ]
    optional = (
        ("stanza_id", incoming.stanza_id),
        ("id", incoming.message_id),
        ("stamp", incoming.stamp),
        ("muc_pm", "true" if incoming.muc_pm else None),
        ("evidence", MAM_EVIDENCE if incoming.via is Via.MAM else None),
    )
    meta += [(k, v) for k, v in optional if v]
    return Item(
        raw=piece.raw,
        channel=Channel.XMPP,
        tenant=tenant,
        account=account,
        source_ref=ref,
        received_at=got.received_at,
        identities=incoming.identities,
        summary=incoming.summary,
        meta=tuple(meta),
        dedupe_scope=source,
    )


RECONCILED = "the stanza stays as the server delivered it; never acknowledged"


def where_now(body: dict[str, Any], *, source: str) -> str | None:
    """For ``Pipeline.reconcile``: where a message this source archived is now; None if the entry
    is not this source's, or is a subscription request (still pending at the server, which
    repeats it at the next login, where it is judged and denied through the pipeline)."""
    ref, meta = body.get("source_ref"), body.get("meta")
    if not isinstance(ref, str) or not ref.startswith(source + ":") or not isinstance(meta, dict):
        return None
    if meta.get("via") == str(Via.SUBSCRIBE):
        return None
    return RECONCILED
