"""Rendering the cease-contact warning: the exact bytes that will be sent, built safely.

Contracts:
- Pure: the same template, values, Date and Message-ID give the same bytes (so a dry run shows
  exactly what is sent, and the vault keeps exactly what was sent).
- No header injection: every value that reaches a header or the template is refused if it holds
  CR, LF or NUL; headers are then built by the email package under the SMTP policy, which folds
  and encodes them (RFC 2047 for non-ASCII) instead of passing anything through raw.
- The body is the template's text with CRLF line ends in UTF-8 (7bit when it is ASCII). A
  non-ASCII body is rendered twice, ``raw`` with ``8bit`` for a server offering 8BITMIME and
  ``raw_7bit`` with quoted-printable for one that does not; the submitter sends one of them.
- A non-ASCII address (From or To) is written in UTF-8 headers (RFC 6532), never RFC 2047
  encoded: such a message needs a server offering SMTPUTF8, and ``raw_7bit`` is then ``raw``.
- The XMPP form (``render_xmpp_warning``) is one ``<message type="chat">`` stanza with the body as
  its only text, built by ElementTree (attributes and text escaped); text XML 1.0 cannot carry
  (control characters, lone surrogates) is refused rather than altered.
- ``should_not_answer`` says when an item must not trigger a warning (RFC 3834 section 2:
  auto-submitted, list and bounce mail; no-reply senders).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

from guardmail.core.headers import header_fields

# The id of every warning stanza guardmail sends: its own copy, when the server hands it back
# (a sent carbon, an archive result), is the warning already journaled, not the person's message.
WARNING_ID_PREFIX = "guardmail-warning-"

_FORBIDDEN = re.compile(r"[\r\n\x00]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
NS_SID = "urn:xmpp:sid:0"
_NO_REPLY_LOCAL = re.compile(
    r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|listserv|majordomo)([+._-].*)?$",
    re.IGNORECASE,
)


class TemplateError(ValueError):
    """A warning template did not render (jinja2's error, its message kept)."""


class UnsafeValue(ValueError):
    """A value that would let a header be injected or the message be malformed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningMessage:
    """A rendered warning: the bytes to send and what they say, for the ledger and the person."""

    raw: bytes
    sender: str
    recipient: str
    subject: str
    message_id: str
    """The Message-ID (e-mail) or the stanza id (XMPP)."""
    date: str
    channel: str = "email"
    """email or xmpp."""
    raw_7bit: bytes = b""
    """The same e-mail with a 7-bit body (quoted-printable) for a server without 8BITMIME;
    empty for XMPP."""


def check_safe(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise UnsafeValue(f"{name} {value!r} contains a line break or NUL; refusing to send")
    return value


def render_warning(
    *,
    template: str,
    values: Mapping[str, str],
    sender: str,
    recipient: str,
    subject: str,
    date: str,
    message_id: str,
) -> WarningMessage:
    """The exact message to send. Raises UnsafeValue or TemplateError on bad input."""
    for key, value in values.items():
        check_safe(key, value)
    for key, value in (
        ("from", sender),
        ("recipient", recipient),
        ("subject", subject),
        ("date", date),
        ("message-id", message_id),
    ):
        check_safe(key, value)
    body = _render(template, values).replace("\r\n", "\n")
    utf8 = not (sender.isascii() and recipient.isascii())

    def build(cte: str | None) -> bytes:
        msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
        msg["From"] = sender
        msg["To"] = recipient
        msg["Subject"] = subject
        msg["Date"] = date
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "no"  # written by a person's instruction, not an auto-reply
        msg.set_content(body, charset="utf-8", cte=cte)
        return msg.as_bytes()

    raw = build(None)
    return WarningMessage(
        raw=raw,
        raw_7bit=raw if raw.isascii() or utf8 else build("quoted-printable"),
        sender=sender,
        recipient=recipient,
        subject=subject,
        message_id=message_id,
        date=date,
    )


def render_xmpp_warning(
    *,
    template: str,
    values: Mapping[str, str],
    sender: str,
    recipient: str,
    date: str,
    stanza_id: str,
) -> WarningMessage:
    """The exact stanza to send over XMPP. Raises UnsafeValue or TemplateError."""
    for key, value in (*values.items(), ("recipient", recipient), ("stanza id", stanza_id)):
        check_safe(key, value)
    body = _render(template, values).replace("\r\n", "\n")
    bad = _NOT_XML.search(body)
    if bad is not None:
        raise UnsafeValue(
            f"the warning text holds {bad.group()!r}, which XML cannot carry; refusing to send"
        )
    msg = ET.Element(
        "message", {"xmlns": "jabber:client", "to": recipient, "type": "chat", "id": stanza_id}
    )
    ET.SubElement(msg, "body").text = body
    ET.SubElement(msg, "origin-id", {"xmlns": NS_SID, "id": stanza_id})
    return WarningMessage(
        raw=ET.tostring(msg, encoding="unicode").encode("utf-8"),
        sender=sender,
        recipient=recipient,
        subject="",
        message_id=stanza_id,
        date=date,
        channel="xmpp",
    )


def _render(template: str, values: Mapping[str, str]) -> str:
    # jinja2 (~9 MB) is imported at the first warning, not by every process that imports this.
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    try:
        return env.from_string(template).render(**values)
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from exc


def is_no_reply_address(address: str) -> bool:
    local = address.rpartition("@")[0].strip("<> ")
    return bool(_NO_REPLY_LOCAL.match(local))


def should_not_answer(raw: bytes) -> str | None:
    """Why this message must not be answered automatically (RFC 3834), or None."""
    fields = {name.lower(): value for name, value in reversed(header_fields(raw))}
    auto = fields.get("auto-submitted", "no").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("list-id", "list-unsubscribe", "list-post"):
        if name in fields:
            return f"mailing list ({name})"
    precedence = fields.get("precedence", "").strip().lower()
    if precedence in {"bulk", "list", "junk"}:
        return f"Precedence: {precedence}"
    return_path = fields.get("return-path")
    if return_path is not None and return_path.strip() in {"<>", ""}:
        return "bounce (empty Return-Path)"
    sender = fields.get("from", "")
    for token in re.findall(r"[^\s<>,;\"]+@[^\s<>,;\"]+", sender):
        if is_no_reply_address(token):
            return f"no-reply sender {token}"
    return None


__all__ = [
    "TemplateError",
    "UnsafeValue",
    "WarningMessage",
    "check_safe",
    "is_no_reply_address",
    "render_warning",
    "render_xmpp_warning",
    "should_not_answer",
]
