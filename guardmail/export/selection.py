"""Which journal entries an export covers: items by offender and date, warnings, the journal run.

Contracts:
- Offenders match by name ignoring case; with none given, every offender is exported.
- ``since``/``until`` are inclusive calendar dates (UTC) compared with each item's ``received_at``.
- Items come in journal order (seq), which is the order the vault took them.
- ``Evidence.journal`` is the contiguous run of rows from the lowest to the highest seq among the
  exported items, their ``action`` rows and the exported offenders' ``warning`` rows, including
  every row in between: a third party recomputes the chain over it from its first ``prev_hash``.
- No one else's facts leave the vault: only the rows in ``Evidence.shown`` (the exported items,
  their ``action`` rows, the exported offenders' warnings) travel with their bodies; every other
  row of the run stands in the bundle as its ``prev_hash`` and ``hash`` alone (``withheld``), so
  the chain still links from end to end and an export for one offender says nothing of another.
- Chain-of-custody records (guardmail.vault.custody) travel with their bodies only when they
  are about what the bundle shows (``_custody``); the rest are withheld like any other row.
- Reading only: nothing here writes to the vault.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from guardmail.export import ExportError
from guardmail.export.evidence import (
    AbuseSent,
    Criteria,
    CustodyEntry,
    Evidence,
    ExportItem,
    ExportNote,
    SentWarning,
)
from guardmail.storage.base import JournalRow
from guardmail.vault import custody, journal
from guardmail.vault.notes import note_of

EXTENSIONS = {"mail": "eml", "xmpp": "xml"}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return "" if value is None else str(value)


def received_at(body: dict[str, Any]) -> datetime:
    """The item's ``received_at`` in UTC (the journal time when missing or naive)."""
    for key in ("received_at", "time"):
        raw = body.get(key)
        if isinstance(raw, str):
            try:
                when = datetime.fromisoformat(raw)
            except ValueError:
                continue
            return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def slug(name: str) -> str:
    """A file-name-safe, lower-case form of an offender name (``Jo Smith!`` -> ``jo-smith``)."""
    out = "".join(c if c.isascii() and c.isalnum() else "-" for c in name.casefold())
    return "-".join(part for part in out.split("-") if part)[:60] or "offender"


def journaled_offenders(rows: Iterable[JournalRow]) -> list[str]:
    """Offender names of archived entries, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        if row.kind == "archived":
            name = journal.entry(row).get("offender")
            if isinstance(name, str) and name:
                seen.setdefault(name, None)
    return list(seen)


def unknown_offenders(requested: Sequence[str], known: Iterable[str]) -> list[str]:
    """The requested names that match none of ``known``, ignoring case."""
    folded = {k.casefold() for k in known}
    return [name for name in requested if name.casefold() not in folded]


def _item_file(index: int, width: int, when: datetime, seq: int, channel: str) -> str:
    ext = EXTENSIONS.get(channel, "bin")
    return f"items/{index:0{width}d}-{when:%Y%m%dT%H%M%SZ}-seq{seq}.{ext}"


def select(rows: Sequence[JournalRow], *, tenant: str, criteria: Criteria) -> Evidence:
    """The evidence ``criteria`` pick out of a tenant's journal ``rows`` (all of them, seq order).

    Raises ExportError when the rows do not form an intact chain: an export must never launder a
    tampered journal into a bundle that verifies.
    """
    problems = journal.check_chain(rows)
    if problems:
        listed = "; ".join(str(p) for p in problems[:5])
        raise ExportError(
            f"the vault's journal fails verification ({listed}); "
            "run 'guardmail evidence verify' before exporting"
        )
    wanted = {o.casefold() for o in criteria.offenders}
    bodies = {row.seq: journal.entry(row) for row in rows}
    picked: list[tuple[JournalRow, dict[str, Any], datetime]] = []
    confirmed = {
        body["archived_seq"]: _text(body, "offender")
        for row in rows
        if row.kind == "review.confirmed"
        and isinstance((body := bodies[row.seq]).get("archived_seq"), int)
    }
    for row in rows:
        if row.kind != "archived" or row.sha256 is None:
            continue
        body = bodies[row.seq]
        if body.get("action") == "review":
            # Held as a suspected alias: no one's evidence until a person confirms it (the
            # bundle's offender list and report would otherwise name a suspicion); once
            # confirmed (``review.confirmed``), the offender's.
            if row.seq not in confirmed:
                continue
            body = body | {"offender": confirmed[row.seq]}
            bodies[row.seq] = body
        offender = _text(body, "offender")
        anchor = _context_of(body)
        if anchor:  # a room's message kept as context: picked with the offender's it surrounds
            offender = _text(bodies.get(anchor, {}), "offender")
        if wanted and offender.casefold() not in wanted:
            continue
        when = received_at(body)
        day = when.date()
        if criteria.since is not None and day < criteria.since:
            continue
        if criteria.until is not None and day > criteria.until:
            continue
        picked.append((row, body, when))

    picked_seqs = {row.seq for row, _, _ in picked}
    done: dict[int, str] = {}
    action_seqs: list[int] = []
    for row in rows:
        if row.kind == "action":
            archived_seq = bodies[row.seq].get("archived_seq")
            if isinstance(archived_seq, int) and archived_seq in picked_seqs:
                done[archived_seq] = _text(bodies[row.seq], "done")
                action_seqs.append(row.seq)

    width = max(4, len(str(len(picked))))
    items = tuple(
        ExportItem(
            index=i,
            seq=row.seq,
            sha256=row.sha256 or "",
            size=int(body.get("size") or 0),
            file=_item_file(i, width, when, row.seq, _text(body, "channel")),
            received_at=when,
            archived_at=_text(body, "time"),
            channel=_text(body, "channel"),
            account=_text(body, "account"),
            source_ref=row.source_ref or _text(body, "source_ref"),
            offender=_text(body, "offender"),
            rule=_text(body, "rule"),
            header=_text(body, "header"),
            action=_text(body, "action"),
            done=done.get(row.seq, ""),
            subject=_text(body, "subject"),
            message_id=_text(body, "message_id"),
            date=_text(body, "date"),
            looks_like=_looks_like(body),
            imported=_imported(body),
            direction=_text(body, "direction"),
            room=_room(body),
            context_of=_context_of(body),
        )
        for i, (row, body, when) in enumerate(picked, start=1)
    )
    offenders = tuple(dict.fromkeys(item.offender for item in items if not item.context_of))
    warnings = _warnings(rows, bodies, {o.casefold() for o in offenders})
    folded = {o.casefold() for o in offenders}
    notes = _notes(rows, criteria, folded) if items else ()
    reports = tuple(
        AbuseSent(
            seq=row.seq,
            time=received_at(bodies[row.seq]),
            offender=_text(bodies[row.seq], "offender"),
            to=_text(bodies[row.seq], "to"),
        )
        for row in rows
        if row.kind == "abuse_report" and _text(bodies[row.seq], "offender").casefold() in folded
    )
    seqs = [*picked_seqs, *action_seqs, *(w.seq for w in warnings), *(n.note.seq for n in notes)]
    seqs += [r.seq for r in reports]
    kept = _custody(rows, bodies, set(seqs), picked_seqs, folded)
    seqs += [c.seq for c in kept]
    run: tuple[JournalRow, ...] = ()
    if seqs:
        lo, hi = min(seqs), max(seqs)
        run = tuple(row for row in rows if lo <= row.seq <= hi)
    return Evidence(
        tenant=tenant,
        criteria=criteria,
        offenders=offenders,
        items=items,
        warnings=warnings,
        journal=run,
        head=rows[-1] if rows else None,
        shown=frozenset(seqs),
        notes=notes,
        abuse_reports=reports,
        custody=kept,
    )


def _custody(
    rows: Sequence[JournalRow],
    bodies: dict[int, dict[str, Any]],
    shown: set[int],
    picked: set[int],
    offenders: set[str],
) -> tuple[CustodyEntry, ...]:
    """The custody records that travel with their bodies: views of an entry the bundle shows,
    verifications of the vault after its first exported entry (counts only), earlier exports
    of these offenders only, and the confirmations that made an exported item evidence."""
    if not shown:
        return ()
    first = min(shown)
    found: list[CustodyEntry] = []
    for row in rows:
        if row.kind not in custody.KINDS:
            continue
        body = bodies[row.seq]
        if row.kind == custody.CUSTODY:
            what = body.get("what")
            keep = (what == "view" and body.get("entry") in shown) or (
                what == "verify" and row.seq > first
            )
        elif row.kind == "export":
            named = body.get("offenders")
            keep = (
                isinstance(named, list)
                and bool(named)
                and all(str(o).casefold() in offenders for o in named)
            )
        else:
            keep = row.kind == "review.confirmed" and body.get("archived_seq") in picked
        if keep:
            text = custody.describe(row, body)
            found.append(CustodyEntry(seq=row.seq, time=received_at(body), text=text))
    return tuple(found)


def _notes(
    rows: Sequence[JournalRow], criteria: Criteria, offenders: set[str]
) -> tuple[ExportNote, ...]:
    """The case notes an export carries: those about no one offender, or about one exported."""
    found: list[ExportNote] = []
    for row in rows:
        note = note_of(row)
        if note is None or (note.offender and note.offender.casefold() not in offenders):
            continue
        day = note.time.date()
        if (criteria.since and day < criteria.since) or (criteria.until and day > criteria.until):
            continue
        files = tuple(
            (f"notes/seq{note.seq}-{n}-{slug(f.name.rsplit('.', 1)[0])}{_suffix(f.name)}", f)
            for n, f in enumerate(note.files, start=1)
        )
        found.append(ExportNote(note=note, files=files))
    return tuple(found)


def _room(body: dict[str, Any]) -> str:
    muc = body.get("muc")
    return str(muc.get("room") or "") if isinstance(muc, dict) else ""


def _context_of(body: dict[str, Any]) -> int:
    muc = body.get("muc")
    anchor = muc.get("context_of") if isinstance(muc, dict) else None
    return anchor if isinstance(anchor, int) and not isinstance(anchor, bool) else 0


def _suffix(name: str) -> str:
    """A file name's extension if it is a plain short one (``.pdf``), else nothing."""
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    return f".{ext.lower()}" if ext.isascii() and ext.isalnum() and len(ext) <= 8 else ""


def _imported(body: dict[str, Any]) -> str:
    """The provenance of an imported item (``guardmail import``), or "" for a live one."""
    imported = body.get("imported")
    if not isinstance(imported, dict):
        return ""
    note = imported.get("note")
    return note[:500] if isinstance(note, str) and note else "imported; not received by guardmail"


def _looks_like(body: dict[str, Any]) -> tuple[str, ...]:
    """What the decision found about look-alike letters (``looks like x@y: Cyrillic а ...``)."""
    matches = body.get("matches")
    found: dict[str, None] = {}
    if isinstance(matches, list):
        for m in matches[:20]:
            if isinstance(m, dict) and isinstance(m.get("looks_like"), str) and m["looks_like"]:
                found.setdefault(m["looks_like"][:300], None)
    return tuple(found)


def _warnings(
    rows: Sequence[JournalRow], bodies: dict[int, dict[str, Any]], offenders: set[str]
) -> tuple[SentWarning, ...]:
    found: list[SentWarning] = []
    names: dict[str, int] = {}
    for row in rows:
        if row.kind != "warning" or row.sha256 is None:
            continue
        body = bodies[row.seq]
        offender = _text(body, "offender")
        if offender.casefold() not in offenders:
            continue
        # At most one warning per offender is ever sent; should there be more, none is dropped.
        base = f"warning-{slug(offender)}"
        names[base] = names.get(base, 0) + 1
        name = base if names[base] == 1 else f"{base}-{names[base]}"
        channel = _text(body, "channel") or "email"
        found.append(
            SentWarning(
                seq=row.seq,
                sha256=row.sha256,
                file=f"{name}.xml" if channel == "xmpp" else f"{name}.eml",
                offender=offender,
                to=_text(body, "to"),
                sent_at=_text(body, "sent_at"),
                message_id=_text(body, "message_id"),
                channel=channel,
            )
        )
    return tuple(found)
