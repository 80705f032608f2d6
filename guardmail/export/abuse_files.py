"""The bundle's abuse reports: one per offender and sending provider, ready for the person to send.

For each exported offender and each provider their items came from, the bundle holds

    abuse/<offender>-<domain>.txt   a plain-text report to abuse@<domain>: what happened, and for
                                    every item its times, Message-ID, SHA-256, bundle file and
                                    full header block (every Received: line), as abuse desks ask
    abuse/<offender>-<domain>.eml   for mail, the same as an RFC 5965 (ARF) feedback report in
                                    RFC 6522 multipart/report with the first ``MAX_ATTACHED``
                                    messages attached unaltered (guardmail.export.arf), when the
                                    person's own address can be read from the items (its From:)

Contracts:
- The provider is the domain of the item's From: address (the JID's domain for XMPP); without
  one, that of the host that took the message first (``by`` of the earliest Received: line,
  its last two labels). Items with neither are grouped under "unknown" with no .eml.
- Bounded work and size: ``add`` keeps a summary of each item (at most ``MAX_HEADER_BYTES`` of
  its header block), the .txt carries full headers for the first ``MAX_LISTED`` items of a group
  and lists the rest by hash; the .eml re-reads only the blobs it attaches.
- Text from items is reduced to printable characters line by line: a hostile header cannot add
  a line the reader would take as ours, nor a control character that a terminal acts on.
- Nothing here sends anything: the person reads and sends the report (or ``guardmail evidence
  abuse-report --send``); a sent report is journaled and shows on the report's timeline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from guardmail.core.headers import header_fields
from guardmail.core.item import mail_identities
from guardmail.export.arf import build_report, original, valid_address
from guardmail.export.content import sent_time
from guardmail.export.evidence import ExportItem
from guardmail.export.selection import slug

ABUSE_DIR = "abuse"
MAX_ATTACHED = 20  # messages attached to one .eml
MAX_LISTED = 200  # items of one report shown with their full headers
MAX_HEADER_BYTES = 32 * 1024  # of one item's header block kept for the report
MAX_GROUPS = 20  # providers per offender; items from further ones go to the last group
_BY = re.compile(r"\bby\s+([A-Za-z0-9.-]+)", re.IGNORECASE)
_JID_FROM = re.compile(rb"""<message\b[^>]*?\bfrom\s*=\s*["']([^"'/@\s]+@)?([^"'/\s]+)""")
_JID_TO = re.compile(rb"""<message\b[^>]*?\bto\s*=\s*["']([^"'/\s]+)""")
_UNPRINTABLE = re.compile(r"[^\t\x20-\x7e\u00a0-\uffff]")

ReadBlob = Callable[[ExportItem], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Seen:
    item: ExportItem
    domain: str
    headers: str  # the header block as text (bounded, printable)
    date: str  # the Date: field as written
    recipient: str  # the person's address it was sent to ("" if unreadable)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbuseFile:
    """One file of the bundle's abuse/ folder, for manifest.json."""

    file: str
    offender: str
    domain: str
    to: str
    items: int
    form: str  # "text" or "arf"
    data: bytes


def _printable(text: str) -> str:
    return _UNPRINTABLE.sub("", text)


def _host_domain(host: str) -> str:
    labels = [p for p in host.strip(".").lower().split(".") if p]
    return ".".join(labels[-2:]) if len(labels) >= 2 else ""


def provider(raw: bytes, channel: str) -> str:
    """The sending provider's domain (see the module's contract), or ""."""
    if channel == "xmpp":
        m = _JID_FROM.search(raw[:4096])
        return m.group(2).decode("ascii", "replace").lower() if m else ""
    domain = original_domain(raw)
    if domain:
        return domain
    received = [v for n, v in header_fields(raw) if n.lower() == "received"]
    by = _BY.search(received[-1]) if received else None
    return _host_domain(by.group(1)) if by else ""


def original_domain(raw: bytes) -> str:
    sender = next((i.address or "" for i in mail_identities(raw) if i.source == "From"), "")
    domain = sender.rpartition("@")[2].strip().rstrip(".").lower() if "@" in sender else ""
    return domain if re.fullmatch(r"[a-z0-9.-]+\.[a-z0-9-]+", domain) else ""


def _header_block(raw: bytes) -> str:
    end = min(len(raw), MAX_HEADER_BYTES)
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep, 0, MAX_HEADER_BYTES)
        if at >= 0:
            end = min(end, at)
    text = raw[:end].decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = [_printable(line) for line in text.split("\n")]
    if end == MAX_HEADER_BYTES:
        lines.append(f"[header block cut at {MAX_HEADER_BYTES:,} bytes: see the item file]")
    return "\n".join(lines)


class AbuseReports:
    """Collects the exported items (``add``) and writes the abuse reports (``files``)."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, list[_Seen]]] = {}  # offender -> domain -> items

    def add(self, item: ExportItem, raw: bytes) -> None:
        domain = provider(raw, item.channel) or "unknown"
        groups = self._seen.setdefault(item.offender, {})
        if domain not in groups and len(groups) >= MAX_GROUPS:
            domain = list(groups)[-1]
        fields = {n.lower(): v for n, v in reversed(header_fields(raw))}
        if item.channel == "xmpp":
            to = _JID_TO.search(raw[:4096])
            recipient = to.group(1).decode("utf-8", "replace") if to else ""
        else:
            recipient = original(item, raw).recipient
        group = groups.setdefault(domain, [])
        if len(group) >= MAX_LISTED:
            headers = ""  # listed by hash only: memory stays bounded for a large export
        else:
            headers = _header_block(raw) if item.channel != "xmpp" else _stanza(raw)
        group.append(
            _Seen(
                item=item,
                domain=domain,
                headers=headers,
                date=_printable(" ".join(fields.get("date", "").split()))[:200],
                recipient=_printable(recipient)[:200],
            )
        )

    def files(self, *, read: ReadBlob, now: datetime, version: str) -> list[AbuseFile]:
        out: list[AbuseFile] = []
        for offender, groups in self._seen.items():
            for domain, seen in groups.items():
                to = f"abuse@{domain}" if valid_address(f"abuse@{domain}") else ""
                base = f"{ABUSE_DIR}/{slug(offender)}-{re.sub(r'[^a-z0-9.-]', '-', domain)[:80]}"
                text = report_text(offender, domain, to, seen, version=version, now=now)
                out.append(_file(f"{base}.txt", offender, domain, to, seen, "text", text.encode()))
                eml = self._arf(offender, to, seen, read=read, now=now, version=version)
                if eml:
                    out.append(_file(f"{base}.eml", offender, domain, to, seen, "arf", eml))
        return out

    def _arf(
        self,
        offender: str,
        to: str,
        seen: list[_Seen],
        *,
        read: ReadBlob,
        now: datetime,
        version: str,
    ) -> bytes:
        mails = [s for s in seen if s.item.channel != "xmpp"]
        sender = next((s.recipient for s in mails if valid_address(s.recipient)), "")
        if not mails or not to or not sender:
            return b""
        origs = [original(s.item, read(s.item)) for s in mails[:MAX_ATTACHED]]
        origs += [original(s.item, b"") for s in mails[MAX_ATTACHED:]]
        mark = (
            "guardmail-report-"
            + hashlib.sha256("".join(s.item.sha256 for s in mails).encode()).hexdigest()[:24]
        )
        try:
            built = build_report(
                origs,
                offender=offender,
                to=to,
                sender=sender,
                now=now,
                version=version,
                attach=MAX_ATTACHED,
                boundary=mark,
            )
        except ValueError:  # the boundary occurs in a message: let arf pick a random one
            built = build_report(
                origs,
                offender=offender,
                to=to,
                sender=sender,
                now=now,
                version=version,
                attach=MAX_ATTACHED,
            )
        return built.data


def _file(
    name: str, offender: str, domain: str, to: str, seen: list[_Seen], form: str, data: bytes
) -> AbuseFile:
    return AbuseFile(
        file=name, offender=offender, domain=domain, to=to, items=len(seen), form=form, data=data
    )


def _stanza(raw: bytes) -> str:
    text = raw[:4096].decode("utf-8", "replace")
    return _printable(" ".join(text.split())) + (
        "\n[stanza cut at 4,096 bytes]" if len(raw) > 4096 else ""
    )


def report_text(
    offender: str, domain: str, to: str, seen: Sequence[_Seen], *, version: str, now: datetime
) -> str:
    """The plain-text abuse report on ``seen`` (one offender's items from ``domain``)."""
    items = [s.item for s in seen]
    first = min(i.received_at for i in items)
    last = max(i.received_at for i in items)
    recipient = next((s.recipient for s in seen if s.recipient), "our user")
    chat = all(i.channel == "xmpp" for i in items)
    what = ("instant message" if chat else "message") + ("s" if len(items) != 1 else "")
    lines = [
        f"To: {to or '(the abuse desk of ' + domain + ')'}",
        f"Subject: Abuse report: harassment from {domain} ({len(items)} {what})",
        "",
        f"To the abuse desk of {domain},",
        "",
        f"A user of your service keeps writing to {recipient} against their will. This is",
        f"harassment; the recipient has blocked the sender. {len(items)} {what} arrived",
        f"between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC. Each is listed below with",
        "its full headers, the times it was sent and received, and the SHA-256 of its exact bytes.",
        "",
        "Please act on the sending account under your terms of service and preserve your",
        "records of it (logs, account and payment details): the recipient has gone, or may go,",
        "to the police, who may ask you for them.",
    ]
    if chat:
        lines += [
            "",
            "These are XMPP messages: if this is not your abuse address, please forward this",
            "report to the one your server publishes (XEP-0157 contact addresses).",
        ]
    lines += ["", "=" * 72]
    for n, s in enumerate(seen, start=1):
        i = s.item
        sent = sent_time(s.date) if s.date else None
        lines += [
            "",
            f"Message {n} of {len(seen)}",
            f"  Received (UTC): {i.received_at:%Y-%m-%d %H:%M:%S}",
            f"  Date:           {s.date or '-'}"
            + (f"  ({sent:%Y-%m-%d %H:%M:%S} UTC)" if sent else ""),
            f"  Message-ID:     {_printable(i.message_id) or '-'}",
            f"  SHA-256:        {i.sha256}",
            f"  Size:           {i.size:,} bytes",
            f"  Evidence file:  {i.file}",
        ]
        if n <= MAX_LISTED:
            lines += ["  Full headers:", *("    " + line for line in s.headers.split("\n"))]
        else:
            lines.append(
                f"  (full headers on request: this report lists them for the first {MAX_LISTED})"
            )
    lines += [
        "",
        "=" * 72,
        f"Prepared on {now:%Y-%m-%d %H:%M} UTC with guardmail {version}, which archived these",
        "messages byte for byte in a tamper-evident journal. The recipient can provide each",
        "message in full; its SHA-256 above proves it unaltered.",
    ]
    return "\n".join(lines) + "\n"
