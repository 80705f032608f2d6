"""What a message says about who wrote it, beyond its sender address: the alias linker's input.

``extract`` reads, from one mail item, the features core/aliases.py compares with an offender's
earlier messages:

- ``address``: the From address (``address_key``); ``addresses``: those of every sender
  identity (From, Sender, Reply-To, Return-Path, Resent-*, the envelope sender).
- ``local``: the From local part, normalised, its look-alike letters made ASCII
  (``ascii_lookalike``), with digits and separators stripped (``M.Dalton_82`` -> ``mdalton``),
  so a new number or dot does not make a new name.
- ``names``: each display name of From and Sender as a tuple of tokens, normalised and with
  look-alike letters made ASCII (``"Mаrk  Dalton"`` with a Cyrillic ``а`` -> ``("mark",
  "dalton")``); ``lookalike`` whether one held look-alike letters (a sign in itself). ASCII is
  kept as written rather than folded (``fold`` would make ``m`` into ``rn``), so the tokens can
  be shown to people; an ASCII-only trick (``rn`` for ``m``) is left to the edit distance.
- ``origin_ips``: the first external hop's IP (the bottom-most ``Received`` with a public IP,
  unless that hop is a large provider's own server, which hides its user's) and
  ``X-Originating-IP``.
- ``dkim_domains``: the ``d=`` of each DKIM signature, except large providers' (core/freemail.py).
- ``message_domain``: the Message-ID's right-hand side, except large providers' and host names
  that name no one (``localhost``).
- ``client``: User-Agent or X-Mailer as written (with its version), case-folded.
- ``hour``: the hour (UTC) of the Date field, -1 without one (the sender's clock says it).
- ``contacts``: the phone numbers, handles and addresses of the first text part's unquoted
  lines; ``signature_contacts``: those of its signature only (core/alias_body.py).
- ``text``: the MinHash signature of the writer's own words in that part (core/alias_text.py),
  only when asked (``text=True``: when an offender's archived item is learned; a decision
  makes it only for a message that already resembles an offender, core/aliases.py).

A message that came through a mailing list (``List-Id``, ``List-Post``, ``Precedence: list`` or
``bulk``) keeps no client-side feature (IPs, DKIM, Message-ID, client): the list rewrote or
added them, and every member would share them.

Contracts: pure and total (any bytes; never raises), and bounded: the header section is read by
core/headers.py within its limits, at most ``MAX_RECEIVED`` Received fields, ``MAX_SIGNATURES``
DKIM signatures, ``MAX_NAMES`` names of ``MAX_TOKENS`` tokens of ``MAX_TOKEN`` characters and
``MAX_ADDRESSES`` addresses are kept, and each value looked at is cut to ``MAX_VALUE``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from guardmail.core.alias_body import MAX_CONTACTS, body_text, contacts, signature_contacts
from guardmail.core.alias_text import Signature, signature, valid
from guardmail.core.confusables import ascii_lookalike, lookalike_letters
from guardmail.core.freemail import ANONYMOUS_HOSTS, is_large_provider
from guardmail.core.headers import header_fields
from guardmail.core.identity import normalize_address, normalize_display_name, normalize_domain
from guardmail.core.item import Identity

MAX_RECEIVED = 64
MAX_SIGNATURES = 4
MAX_NAMES = 4
MAX_TOKENS = 8
MAX_TOKEN = 64
MAX_ADDRESSES = 16
MAX_LOCAL = 64
MAX_VALUE = 2048
MAX_CLIENT = 200
MAX_CONTACT = 80

_TOKEN_SPLIT = re.compile(r"[\W_]+")
_BRACKET_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\]")
_HOSTNAME = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)")
_NAME_SOURCES = ("From", "Sender")


@dataclass(frozen=True, slots=True, kw_only=True)
class Features:
    """One message's features (see the module docstring). Empty fields were not found."""

    address: str = ""
    addresses: tuple[str, ...] = ()
    local: str = ""
    names: tuple[tuple[str, ...], ...] = ()
    lookalike: bool = False
    origin_ips: tuple[str, ...] = ()
    dkim_domains: tuple[str, ...] = ()
    message_domain: str = ""
    client: str = ""
    listed: bool = False
    contacts: tuple[str, ...] = ()
    signature_contacts: tuple[str, ...] = ()
    hour: int = -1  # of the Date field, in UTC; -1 if there is none
    text: Signature = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``from_dict`` reads it back)."""
        return {
            "address": self.address,
            "addresses": list(self.addresses),
            "local": self.local,
            "names": [list(n) for n in self.names],
            "lookalike": self.lookalike,
            "origin_ips": list(self.origin_ips),
            "dkim_domains": list(self.dkim_domains),
            "message_domain": self.message_domain,
            "client": self.client,
            "listed": self.listed,
            "contacts": list(self.contacts),
            "signature_contacts": list(self.signature_contacts),
            "hour": self.hour,
            "text": list(self.text),
        }


def from_dict(data: Mapping[str, Any]) -> Features:
    """Features from ``as_dict``'s form; anything malformed is dropped (stored state may have
    been edited), and the bounds are applied again."""

    def text(key: str, limit: int) -> str:
        value = data.get(key)
        return value[:limit] if isinstance(value, str) else ""

    def texts(value: Any, limit: int, count: int) -> tuple[str, ...]:
        if not isinstance(value, list):
            return ()
        return tuple(v[:limit] for v in value[:count] if isinstance(v, str) and v)

    names = data.get("names")
    return Features(
        address=text("address", MAX_VALUE),
        addresses=texts(data.get("addresses"), MAX_VALUE, MAX_ADDRESSES),
        local=text("local", MAX_LOCAL),
        names=tuple(
            t for t in (texts(n, MAX_TOKEN, MAX_TOKENS) for n in (names or [])[:MAX_NAMES]) if t
        )
        if isinstance(names, list)
        else (),
        lookalike=data.get("lookalike") is True,
        origin_ips=texts(data.get("origin_ips"), 64, 4),
        dkim_domains=texts(data.get("dkim_domains"), 255, MAX_SIGNATURES),
        message_domain=text("message_domain", 255),
        client=text("client", MAX_CLIENT),
        listed=data.get("listed") is True,
        contacts=texts(data.get("contacts"), MAX_CONTACT, MAX_CONTACTS),
        signature_contacts=texts(data.get("signature_contacts"), MAX_CONTACT, MAX_CONTACTS),
        hour=hour if isinstance(hour := data.get("hour"), int) and 0 <= hour < 24 else -1,
        text=valid(sig) if isinstance(sig := data.get("text"), list) else (),
    )


def name_tokens(display_name: str) -> tuple[str, ...]:
    """A display name as folded tokens (at most ``MAX_TOKENS`` of ``MAX_TOKEN`` characters);
    empty for a name that holds an address (that is an identity, not a name) or encoded-words
    that did not decode (their charset and encoding would read as tokens)."""
    text = display_name[:MAX_VALUE]
    if "@" in text or "=?" in text:
        return ()  # an address, or encoded-words that did not decode: not a name
    folded = ascii_lookalike(normalize_display_name(text))
    tokens = [t[:MAX_TOKEN] for t in _TOKEN_SPLIT.split(folded) if t]
    return tuple(tokens[:MAX_TOKENS])


def local_skeleton(address: str) -> str:
    """The folded local part with everything but letters stripped (digits, dots, dashes ...)."""
    norm = normalize_address(address[:MAX_VALUE])
    if norm is None:
        return ""
    return "".join(ch for ch in ascii_lookalike(norm.local) if ch.isalpha())[:MAX_LOCAL]


def address_key(address: str) -> str:
    """The normalised address with look-alike letters made ASCII ("" if it is not one): what
    addresses are compared by here, and readable in an explanation."""
    norm = normalize_address(address[:MAX_VALUE])
    return ascii_lookalike(norm.address) if norm is not None else ""


def _public_ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return ""
    return str(ip) if ip.is_global else ""


def _first_external_hop(received: list[str]) -> str:
    """The client IP of the bottom-most Received hop that has a public one; "" if that hop is a
    large provider's own server (its user's IP is hidden) or none has one."""
    for value in reversed(received[-MAX_RECEIVED:]):
        head = value[:MAX_VALUE]
        cut = re.search(r"\bby\b", head, flags=re.IGNORECASE)
        part = head[: cut.start()] if cut else head
        if not part.lower().lstrip().startswith("from"):
            continue
        ips = [ip for ip in (_public_ip(m) for m in _BRACKET_IP.findall(part)) if ip]
        if not ips:
            continue
        hosts = (normalize_domain(h) for h in _HOSTNAME.findall(part))
        if any(is_large_provider(h) for h in hosts if not _is_ip_literal(h)):
            return ""
        return ips[0]
    return ""


def utc_hour(date: str) -> int:
    """The hour (UTC) of a Date field's value, -1 if it does not parse or has no zone."""
    try:
        when = parsedate_to_datetime(date[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return -1
    offset = when.utcoffset()
    if offset is None:
        return -1
    return (when - offset).hour


def _is_ip_literal(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", host))


def _dkim_domains(signatures: Iterable[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for sig in signatures:
        m = _DKIM_D.search(sig[:MAX_VALUE])
        if m is None:
            continue
        domain = normalize_domain(m.group(1))[:255]
        if "." in domain and not is_large_provider(domain):
            out[domain] = None
        if len(out) >= MAX_SIGNATURES:
            break
    return tuple(out)


def _message_domain(message_id: str) -> str:
    value = message_id[:MAX_VALUE].strip().strip("<>").strip()
    at = value.rfind("@")
    if at < 0:
        return ""
    domain = normalize_domain(value[at + 1 :].strip("[]"))[:255]
    if "." not in domain or domain in ANONYMOUS_HOSTS or is_large_provider(domain):
        return ""
    if domain.endswith((".local", ".localdomain", ".lan", ".home")):
        return ""
    return domain


# The fields ``extract`` reads (``header_fields`` decodes only these).
_READ_FIELDS = frozenset(
    {
        b"received",
        b"dkim-signature",
        b"list-id",
        b"list-post",
        b"precedence",
        b"x-originating-ip",
        b"message-id",
        b"user-agent",
        b"x-mailer",
        b"date",
    }
)


def extract(
    raw: bytes,
    identities: Iterable[Identity],
    *,
    body: bool = True,
    text: bool = False,
    learn: bool = True,
    plain: str | None = None,
) -> Features:
    """The features of one mail message (see the module docstring); ``body`` False leaves the
    text unread (no contacts: what a decision does while no offender's signature gave one, the
    index's ``wants_body``); ``text`` True makes the text's signature too; ``learn`` False (a
    decision) leaves out the signature's contacts, which the index learns from an offender's
    mail and never compares (a third of the text's reading); ``plain``: the message's
    ``body_text``, if the caller read it already (a decision reads it once for the contacts
    and the text signature both). Never raises."""
    idents = list(identities)[: 4 * MAX_ADDRESSES]
    address = ""
    keys: dict[str, None] = {}
    names: dict[tuple[str, ...], None] = {}
    lookalike = False
    for ident in idents:
        if ident.address:
            key = address_key(ident.address)
            if key and len(keys) < MAX_ADDRESSES:
                keys[key] = None
            if ident.source == "From" and not address and key:
                address = ident.address
        if ident.display_name and ident.source in _NAME_SOURCES and len(names) < MAX_NAMES:
            tokens = name_tokens(ident.display_name)
            if tokens:
                names[tokens] = None
                lookalike = lookalike or bool(lookalike_letters(ident.display_name[:MAX_VALUE]))
    received: list[str] = []
    signatures: list[str] = []
    first: dict[str, str] = {}
    listed = False
    for name, value in header_fields(raw, _READ_FIELDS):
        low = name.lower()
        if low == "received":
            received.append(value)
            if len(received) > MAX_RECEIVED:
                received.pop(0)
        elif low == "dkim-signature":
            if len(signatures) < MAX_SIGNATURES:
                signatures.append(value)
        elif low in ("list-id", "list-post"):
            listed = True
        elif low == "precedence" and value.strip().lower() in ("list", "bulk"):
            listed = True
        else:
            first.setdefault(low, value)
    if listed:
        ips: tuple[str, ...] = ()
        dkim: tuple[str, ...] = ()
        message_domain = client = ""
    else:
        found = [_first_external_hop(received)]
        origin = first.get("x-originating-ip", "")[:64].strip().strip("[]")
        found.append(_public_ip(origin))
        ips = tuple(dict.fromkeys(ip for ip in found if ip))
        dkim = _dkim_domains(signatures)
        message_domain = _message_domain(first.get("message-id", ""))
        agent = first.get("user-agent") or first.get("x-mailer") or ""
        client = " ".join(agent[:MAX_VALUE].split()).casefold()[:MAX_CLIENT]
    if plain is None:
        plain = body_text(raw) if body or text else ""
    return Features(
        address=address_key(address) if address else "",
        addresses=tuple(keys),
        local=local_skeleton(address) if address else "",
        names=tuple(names),
        lookalike=lookalike,
        origin_ips=ips,
        dkim_domains=dkim,
        message_domain=message_domain,
        client=client,
        listed=listed,
        contacts=tuple(c[:MAX_CONTACT] for c in contacts(plain)) if body else (),
        hour=utc_hour(first.get("date", "")),
        # A list's footer is every member's signature: list mail teaches no contact.
        signature_contacts=()
        if listed or not body or not learn
        else tuple(c[:MAX_CONTACT] for c in signature_contacts(plain)),
        text=signature(plain) if text else (),
    )
