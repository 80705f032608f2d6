"""What the journal keeps beside an archived item's blob: who, where, when and why (the
``metadata`` of its ``archived`` entry), as the pipeline writes it and the readers of the journal
(review, explain, export) find it.
"""

from __future__ import annotations

from typing import Any

from guardmail.core.aliases import Suspicion
from guardmail.core.item import Item
from guardmail.core.rules import Match, Verdict
from guardmail.linker import sender_address


def _match_fields(m: Match) -> dict[str, str]:
    fields = {
        "offender": m.offender,
        "action": str(m.action),
        "rule": m.rule,
        "header": m.header,
        "value": m.value,
        "normalized": m.normalized,
    }
    if m.looks_like:
        fields["looks_like"] = m.looks_like
    return fields


def suspicion_fields(s: Suspicion) -> dict[str, Any]:
    """A suspected alias as the journal keeps it (``review list/show`` and ``explain``)."""
    return {
        "offender": s.offender,
        "likelihood": round(s.likelihood, 4),
        "signals": [{"signal": x.signal, "weight": x.weight, "why": x.why} for x in s.signals],
    }


def evidence_metadata(item: Item, verdict: Verdict) -> dict[str, Any]:
    """What the journal keeps beside the blob: who, where, when and why. An item held for
    review names no offender (it is not one's until a person confirms it): its ``suspected``
    field names the offender it resembles, with the signals."""
    primary = verdict.primary
    extra: dict[str, Any] = {}
    if verdict.suspicion is not None:
        extra["suspected"] = suspicion_fields(verdict.suspicion) | {"sender": sender_address(item)}
    if verdict.impersonation is not None:
        extra["impersonation"] = {
            "kind": verdict.impersonation.kind,
            "why": verdict.impersonation.why,
        }
    return extra | {
        "channel": str(item.channel),
        "account": item.account,
        "received_at": item.received_at.isoformat(),
        "subject": item.summary.subject,
        "message_id": item.summary.message_id,
        "date": item.summary.date,
        "action": str(verdict.action),
        "offender": primary.offender if primary else None,
        "rule": primary.rule if primary else None,
        "header": primary.header if primary else None,
        "matches": [_match_fields(m) for m in verdict.matches],
        "meta": dict(item.meta),
    }
