"""The report's content, independent of its format: cover facts, counts, rows, warnings.

``report.html`` and ``report.pdf`` render the same ``Report``, so they never disagree. Time is a
parameter: ``generated_at`` is the ``now`` the caller passes.

An item's time on the timeline, and whether it came "after the warning", is when it was sent
(``sent_at``): its ``Date:`` field (an XMPP delay stamp), bounded by when it was received. A
``Date:`` that is missing, unreadable, before 1990 or more than ``MAX_SKEW`` after the item was
received is implausible and the received time stands in: mail found on the first scan then
falls on the days it was written, and a late delivery of a message sent before the warning is
not counted against its sender.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from guardmail.core.confusables import ascii_lookalike, lookalike_letters
from guardmail.export.content import Content
from guardmail.export.details import Details
from guardmail.export.evidence import AbuseSent, CustodyEntry, Evidence, ExportItem, SentWarning


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One item as the report shows it."""

    item: ExportItem
    sender: str
    title: str  # the subject, or the first words when there is none
    headers: tuple[tuple[str, str], ...]
    content: Content = Content()
    flags: tuple[str, ...] = ()  # in words: look-alike letters, sent after the warning
    after_warning: bool = False  # sent (``sent_at``) after the warning to its offender was sent
    sent_at: datetime | None = None  # when sent (see the module docstring); None: received_at

    @property
    def when(self) -> datetime:
        """The item's time on the timeline: when it was sent, as far as it can be told."""
        return self.sent_at or self.item.received_at


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningView:
    warning: SentWarning
    subject: str
    text: str  # the readable text of the message sent

    @property
    def sent(self) -> datetime | None:
        return _parse_time(self.warning.sent_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class OffenderCount:
    offender: str
    items: int
    first: datetime
    last: datetime
    channels: str
    after_warning: int = 0  # items sent after the warning to this offender
    addresses: tuple[str, ...] = ()  # the addresses and JIDs its items came from


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteView:
    """A case-journal note (``guardmail case note``): the person's own record of what they did."""

    seq: int
    time: datetime
    text: str
    files: tuple[tuple[str, str, int], ...] = ()  # (bundle file, SHA-256, bytes)
    kind: str = "note"  # guardmail.vault.notes.NOTE_KINDS: "abuse-report" is a report sent
    to: str = ""
    offender: str = ""  # "" for a note about the whole case


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
    bodies: bool = True  # False: a summary copy, message text left out
    protected: tuple[tuple[str, str], ...] = ()  # (label, value) from the case settings
    notes: tuple[NoteView, ...] = ()
    abuse_reports: tuple[AbuseSent, ...] = ()
    journal_last_hash: str = ""  # the hash of the last journal entry in the bundle
    custody: tuple[CustodyEntry, ...] = ()  # who viewed, exported, verified, decided

    @property
    def protected_name(self) -> str:
        return self.protected[0][1] if self.protected else self.tenant

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
    bodies: bool = True,
    protected: tuple[tuple[str, str], ...] = (),
    notes: tuple[NoteView, ...] = (),
) -> Report:
    """``details[i]`` describes ``evidence.items[i]``."""
    warned: dict[str, datetime] = {}
    for w in warnings:
        sent = w.sent
        key = w.warning.offender.casefold()
        if sent is not None and (key not in warned or sent < warned[key]):
            warned[key] = sent
    rows = tuple(
        _row(item, d, warned.get(item.offender.casefold()))
        for item, d in zip(evidence.items, details, strict=True)
    )
    per_day: dict[str, dict[date, int]] = {}
    channels: dict[str, Counter[str]] = {}
    firsts: dict[str, datetime] = {}
    lasts: dict[str, datetime] = {}
    counts: Counter[str] = Counter()
    for row in rows:
        item = row.item
        if item.direction == "outgoing" or item.context_of:
            continue  # the person's own messages and a room's context: not the offender's items
        name = item.offender or "(unknown)"
        day = per_day.setdefault(name, {})
        day[row.when.date()] = day.get(row.when.date(), 0) + 1
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
            after_warning=sum(1 for r in rows if r.after_warning and r.item.offender == name),
            addresses=_addresses(r for r in rows if (r.item.offender or "(unknown)") == name),
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
        bodies=bodies,
        protected=protected,
        notes=notes,
        abuse_reports=evidence.abuse_reports,
        journal_last_hash=evidence.journal[-1].hash if evidence.journal else "",
        custody=evidence.custody,
    )


MAX_ADDRESSES = 20


def _addresses(rows: Iterable[Row]) -> tuple[str, ...]:
    """Distinct sender addresses (mail) and bare JIDs (XMPP), in order of first use."""
    seen: dict[str, None] = {}
    for row in rows:
        sender = row.content.sender or row.sender
        address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
        if row.item.channel == "xmpp":
            address = address.split("/", 1)[0]
        if address and len(seen) < MAX_ADDRESSES:
            seen.setdefault(address[:200], None)
    return tuple(seen)


def _parse_time(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


MAX_SKEW = timedelta(hours=1)  # a sender's clock ahead of ours by more than this is not believed
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


def sent_at(received: datetime, date_field: datetime | None) -> datetime:
    """When an item was sent: its ``Date:`` (``date_field``) if plausible, else ``received``."""
    if date_field is None or date_field < EARLIEST or date_field > received + MAX_SKEW:
        return received
    return date_field


def _row(item: ExportItem, d: Details, warned: datetime | None) -> Row:
    flags = list(item.looks_like)
    if not flags:  # entries journaled before matches said so: read the sender's address
        address = d.sender.rsplit("<", 1)[-1].rstrip(">").strip()
        letters = lookalike_letters(address)
        if letters:
            flags.append(f"looks like {ascii_lookalike(address)}: {', '.join(letters)}")
    # By the time it was sent (Date:), so an imported item (received_at: the import) is
    # judged like a live one; never the person's own message or a room's context.
    sent = sent_at(item.received_at, d.content.sent)
    theirs = item.direction != "outgoing" and not item.context_of
    after = theirs and warned is not None and sent > warned
    flags += side_flags(item)
    if item.imported:
        flags.append(item.imported)
    if after:
        flags.append(f"sent after the warning sent {warned:%Y-%m-%d %H:%M} UTC")
    return Row(
        item=item,
        sender=d.sender,
        title=item.subject.strip() or d.content.subject or d.first_words,
        headers=d.headers,
        content=d.content,
        flags=tuple(flags),
        after_warning=after,
        sent_at=sent,
    )


def side_flags(item: ExportItem) -> list[str]:
    """In words: the person's own message, the room of a group-chat item, a room's context."""
    flags = []
    if item.direction == "outgoing":
        flags.append(f"the person's own message, to {item.offender or 'the offender'}")
    if item.context_of:
        flags.append(f"room context: a message around journal entry {item.context_of}")
    if item.room:
        flags.append(f"group chat in {item.room}")
    return flags


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One line of the report's timeline: a day's items from one offender, the warning, or a
    case note (its first words: the note in full is in the report's case journal)."""

    day: date
    offender: str
    what: str  # "items", "warning", "note", "report" (an abuse report sent) or "custody"
    count: int = 0  # items that day
    after_warning: int = 0  # of which sent after the warning to this offender
    text: str = ""  # for the warning: when and to whom


def timeline(report: Report) -> tuple[Event, ...]:
    """Items per day (sent) per offender, with the warning, notes and abuse reports in their
    places; in time order."""
    days: dict[tuple[date, str], list[Row]] = {}
    for row in report.rows:
        # Imported items stand apart from those guardmail received.
        who = f"{row.item.offender} (imported)" if row.item.imported else row.item.offender
        days.setdefault((row.when.date(), who), []).append(row)
    keyed: list[tuple[datetime, Event]] = []
    for (day, offender), rows in days.items():
        first = min(r.when for r in rows)
        after = sum(1 for r in rows if r.after_warning)
        event = Event(
            day=day, offender=offender, what="items", count=len(rows), after_warning=after
        )
        keyed.append((first, event))
    for w in report.warnings:
        sent = w.sent
        if sent is None:
            continue
        text = f"warning sent {sent:%Y-%m-%d %H:%M} UTC to {w.warning.to}"
        event = Event(day=sent.date(), offender=w.warning.offender, what="warning", text=text)
        keyed.append((sent, event))
    for note in report.notes:
        words = " ".join(note.text.split())
        words = words if len(words) <= 300 else words[:299] + "\u2026"
        who = note.offender or "case journal"
        if note.kind == "abuse-report":
            to = f" to {note.to}" if note.to else ""
            text = f"abuse report sent {note.time:%H:%M} UTC{to} (case note, entry {note.seq})"
            event = Event(
                day=note.time.date(), offender=who, what="report", text=f"{text}: {words}"
            )
        else:
            kind = "" if note.kind == "note" else f", {note.kind}"
            to = f" to {note.to}" if note.to else ""
            text = f"case note (entry {note.seq}, {note.time:%H:%M} UTC{kind}{to}): {words}"
            event = Event(day=note.time.date(), offender=who, what="note", text=text)
        keyed.append((note.time, event))
    for a in report.abuse_reports:
        text = f"abuse report sent {a.time:%H:%M} UTC to {a.to} (journal entry {a.seq})"
        keyed.append(
            (a.time, Event(day=a.time.date(), offender=a.offender, what="report", text=text))
        )
    for c in report.custody:
        text = f"{c.text} ({c.time:%H:%M} UTC, journal entry {c.seq})"
        keyed.append(
            (
                c.time,
                Event(day=c.time.date(), offender="chain of custody", what="custody", text=text),
            )
        )
    keyed.sort(key=lambda k: k[0])
    return tuple(e for _, e in keyed)
