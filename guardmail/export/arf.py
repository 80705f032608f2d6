"""An abuse report for the offender's mail provider: RFC 5965 (ARF) in RFC 6522 multipart/report.

Layout (one report, however many messages):

    multipart/report; report-type=feedback-report
      1. text/plain                   what happened, every message listed with date and SHA-256
      2. message/feedback-report      Feedback-Type: abuse, User-Agent, Version: 1, ...
      3. message/rfc822               the earliest message, the RFC 5965 "reported message"
      4.. message/rfc822              further messages (up to the caller's limit), as attachments

ARF processors read the first three parts; a person at the abuse desk sees every attachment. One
report per message would be stricter ARF, but a harassment case is many messages from one
account, and one mail carrying them all is what an abuse desk can act on.

Contracts:
- The outer MIME is assembled here from bytes; the email package builds only the text part. An
  attached original's payload is exactly the archived bytes: never re-encoded, re-folded or
  line-ending converted, and labelled 7bit, 8bit or binary as its bytes require (RFC 2046 allows
  no other encoding for message/rfc822).
- The boundary occurs in none of the parts. Header values from messages are reduced to printable
  ASCII with no line breaks, so a hostile Return-Path cannot inject a field.
"""

from __future__ import annotations

import email.policy
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import MIMEPart
from email.utils import format_datetime, make_msgid, parseaddr

from guardmail.core.headers import header_fields
from guardmail.core.item import mail_identities
from guardmail.export.evidence import ExportItem

CRLF = b"\r\n"
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
_LONG_LINE = re.compile(rb"[^\r\n]{999}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Original:
    """An archived message as the report uses it."""

    item: ExportItem
    raw: bytes
    sender: str  # the From address, as found
    domain: str  # its domain, lower case ("" if none)
    return_path: str  # envelope sender from Return-Path, "" if none or unusable
    recipient: str  # Delivered-To or To, "" if none


@dataclass(frozen=True, slots=True, kw_only=True)
class AbuseReport:
    data: bytes
    to: str
    sender: str
    subject: str
    domain: str
    attached: int
    listed: int


def valid_address(value: str) -> bool:
    return bool(_ADDR.match(value))


def _ascii_line(value: str) -> str:
    return "".join(c for c in value if " " <= c <= "~").strip()


def _address_in(value: str) -> str:
    addr = parseaddr(value)[1]
    return addr if valid_address(addr) else ""


def original(item: ExportItem, raw: bytes) -> Original:
    sender = next((i.address or "" for i in mail_identities(raw) if i.source == "From"), "")
    fields = {name.lower(): value for name, value in reversed(header_fields(raw))}
    recipient = _address_in(fields.get("delivered-to", "")) or _address_in(fields.get("to", ""))
    domain = sender.rpartition("@")[2].strip().rstrip(".").lower() if "@" in sender else ""
    return Original(
        item=item,
        raw=raw,
        sender=sender,
        domain=_ascii_line(domain),
        return_path=_address_in(fields.get("return-path", "")),
        recipient=recipient,
    )


def transfer_encoding(raw: bytes) -> str:
    """The narrowest RFC 2045 label the bytes satisfy: 7bit, 8bit or binary."""
    if b"\x00" in raw or _LONG_LINE.search(raw):
        return "binary"
    return "7bit" if raw.isascii() else "8bit"


def _widest(labels: Sequence[str]) -> str:
    return max(labels, key=("7bit", "8bit", "binary").index)


def _text(offender: str, origs: Sequence[Original], attached: int, version: str) -> str:
    first, last = origs[0].item.received_at, origs[-1].item.received_at
    senders = ", ".join(dict.fromkeys(o.sender for o in origs if o.sender)) or "(unknown)"
    recipient = next((o.recipient for o in origs if o.recipient), "our user")
    lines = [
        f"This is an abuse report about mail sent from {origs[0].domain or 'your service'}.",
        "",
        f"The sender {senders} keeps writing to {recipient} against their will: this is",
        f"harassment, and the recipient has blocked the sender ({offender}).",
        f"{len(origs)} message(s) arrived between {first:%Y-%m-%d %H:%M} and "
        f"{last:%Y-%m-%d %H:%M} UTC. {attached} of them are attached unaltered, as",
        "message/rfc822 parts; the first attachment is the reported message in the sense of",
        "RFC 5965.",
        "",
        "Please act on the sending account(s) under your terms of service, and preserve your",
        "records of them: the recipient may need them for a police report.",
        "",
        "Messages (received UTC, Message-ID, SHA-256 of the exact bytes, attached):",
    ]
    for n, o in enumerate(origs, start=1):
        mark = "attached" if n <= attached else "on request"
        lines.append(
            f"{n:>4}. {o.item.received_at:%Y-%m-%d %H:%M}  {o.item.message_id or '-'}  "
            f"{o.item.sha256}  {mark}"
        )
    lines += [
        "",
        f"Prepared with guardmail {version}, which archived these messages byte for byte in a",
        "tamper-evident journal; the recipient can provide the complete, verifiable evidence.",
    ]
    return "\n".join(lines) + "\n"


def _feedback(origs: Sequence[Original], recipient: str, version: str) -> bytes:
    first = origs[0]
    fields = [
        ("Feedback-Type", "abuse"),
        ("User-Agent", f"guardmail/{version}"),
        ("Version", "1"),
    ]
    if first.return_path:
        fields.append(("Original-Mail-From", f"<{first.return_path}>"))
    if recipient:
        fields.append(("Original-Rcpt-To", f"<{recipient}>"))
    fields.append(("Arrival-Date", format_datetime(first.item.received_at)))
    if first.domain:
        fields.append(("Reported-Domain", first.domain))
    fields.append(("Incidents", str(len(origs))))
    return b"".join(f"{k}: {_ascii_line(v)}".encode("ascii") + CRLF for k, v in fields)


def build_report(
    origs: Sequence[Original],
    *,
    offender: str,
    to: str,
    sender: str,
    now: datetime,
    version: str,
    attach: int | None = None,
    boundary: str | None = None,
) -> AbuseReport:
    """The report on ``origs`` (in time order; at least one), attaching the first ``attach``.

    ``to`` and ``sender`` must satisfy ``valid_address``; ValueError otherwise.
    """
    if not origs:
        raise ValueError("an abuse report needs at least one message")
    for role, addr in (("to", to), ("from", sender)):
        if not valid_address(addr):
            raise ValueError(f"the {role} address {addr!r} is not a plain address")
    attached = list(origs[: attach if attach is not None else len(origs)]) or list(origs[:1])
    recipient = next((o.recipient for o in origs if o.recipient), "")
    subject = f"Abuse report: harassment from {origs[0].domain or 'your service'}"
    subject += f" ({len(origs)} message{'s' if len(origs) != 1 else ''})"

    text = MIMEPart(policy=email.policy.SMTP.clone(cte_type="7bit"))
    text.set_content(_text(offender, origs, len(attached), version), disposition="inline")
    feedback = b"Content-Type: message/feedback-report" + CRLF + CRLF
    feedback += _feedback(origs, recipient, version)
    # With cte_type 7bit, set_content encodes non-ASCII text as quoted-printable or base64.
    parts = [(text.as_bytes(), "7bit"), (feedback, "7bit")]
    for o in attached:
        cte = transfer_encoding(o.raw)
        head = (
            "Content-Type: message/rfc822\r\n"
            f'Content-Disposition: attachment; filename="seq{o.item.seq}.eml"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        )
        parts.append((head.encode("ascii") + o.raw, cte))

    while True:
        mark = boundary or f"guardmail-report-{secrets.token_hex(12)}"
        if not any(f"--{mark}".encode() in body for body, _ in parts):
            break
        if boundary:
            raise ValueError(f"boundary {boundary!r} occurs in a part")

    policy = email.policy.SMTP
    headers = b"".join(
        policy.fold_binary(name, value)
        for name, value in (
            ("From", sender),
            ("To", to),
            ("Subject", subject),
            ("Date", format_datetime(now)),
            ("Message-ID", make_msgid("abuse-report", domain=sender.rpartition("@")[2])),
            ("MIME-Version", "1.0"),
        )
    )
    headers += (
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{mark}"\r\n'
        f"Content-Transfer-Encoding: {_widest([c for _, c in parts])}\r\n"
    ).encode("ascii")
    body = [b"This is a multipart abuse report (RFC 5965)." + CRLF]
    for part, _ in parts:
        body.append(CRLF + f"--{mark}".encode() + CRLF + part)
    body.append(CRLF + f"--{mark}--".encode() + CRLF)
    return AbuseReport(
        data=headers + CRLF + b"".join(body),
        to=to,
        sender=sender,
        subject=subject,
        domain=origs[0].domain,
        attached=len(attached),
        listed=len(origs),
    )
