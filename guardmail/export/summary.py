"""The report's content, independent of its format: cover facts, counts, rows, warnings.

``report.html`` and ``report.pdf`` render the same ``Report``, so they never disagree. Time is a
parameter: ``generated_at`` is the ``now`` the caller passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from guardmail.export.details import Details
from guardmail.export.selection import Evidence, ExportItem, SentWarning


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One item as the report shows it."""

    item: ExportItem
    sender: str
    title: str  # the subject, or the first words when there is none
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningView:
    warning: SentWarning
    subject: str
    text: str  # the readable text of the message sent


@dataclass(frozen=True, slots=True, kw_only=True)
class OffenderCount:
    offender: str
    items: int
    first: datetime
    last: datetime
    channels: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    tenant: str
    offenders: tuple[str, ...]
    since: date | None  # as asked (None: from the first item)
    until: date | None
    first: datetime | None  # first and last item actually exported
    last: datetime | None
    generated_at: datetime
    version: str
    rows: tuple[Row, ...]
    warnings: tuple[WarningView, ...]
    per_offender: tuple[OffenderCount, ...]
    per_channel: tuple[tuple[str, int], ...]
    per_day: dict[str, dict[date, int]]  # offender -> day -> items, for the timeline
    journal_first: int
    journal_last: int
    verification: str  # how to check the bundle, in plain words (the README's text)

    @property
    def period(self) -> str:
        start = self.since or (self.first.date() if self.first else None)
        end = self.until or (self.last.date() if self.last else None)
        return f"{start or '-'} to {end or '-'}"


def build(
    evidence: Evidence,
    *,
    details: Sequence[Details],
    warnings: Sequence[WarningView],
    now: datetime,
    version: str,
    verification: str,
) -> Report:
    """``details[i]`` describes ``evidence.items[i]``."""
    rows = tuple(
        Row(
            item=item,
            sender=d.sender,
            title=item.subject.strip() or d.first_words,
            headers=d.headers,
        )
        for item, d in zip(evidence.items, details, strict=True)
    )
    per_day: dict[str, dict[date, int]] = {}
    channels: dict[str, Counter[str]] = {}
    firsts: dict[str, datetime] = {}
    lasts: dict[str, datetime] = {}
    counts: Counter[str] = Counter()
    for item in evidence.items:
        name = item.offender or "(unknown)"
        day = per_day.setdefault(name, {})
        day[item.received_at.date()] = day.get(item.received_at.date(), 0) + 1
        channels.setdefault(name, Counter())[item.channel] += 1
        counts[name] += 1
        firsts[name] = min(firsts.get(name, item.received_at), item.received_at)
        lasts[name] = max(lasts.get(name, item.received_at), item.received_at)
    per_offender = tuple(
        OffenderCount(
            offender=name,
            items=counts[name],
            first=firsts[name],
            last=lasts[name],
            channels=", ".join(f"{c} {n}" for c, n in sorted(channels[name].items())),
        )
        for name in per_day
    )
    per_channel = tuple(sorted(Counter(i.channel for i in evidence.items).items()))
    times = [i.received_at for i in evidence.items]
    return Report(
        tenant=evidence.tenant,
        offenders=evidence.offenders,
        since=evidence.criteria.since,
        until=evidence.criteria.until,
        first=min(times) if times else None,
        last=max(times) if times else None,
        generated_at=now,
        version=version,
        rows=rows,
        warnings=tuple(warnings),
        per_offender=per_offender,
        per_channel=per_channel,
        per_day=per_day,
        journal_first=evidence.journal[0].seq if evidence.journal else 0,
        journal_last=evidence.journal[-1].seq if evidence.journal else 0,
        verification=verification,
    )
