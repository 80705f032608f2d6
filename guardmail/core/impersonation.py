"""Mail forged in the person's own name, and the bounces such mail brings back (backscatter).

Stalkers send mail that claims to come from the person, to the person (to frighten) or to others
(to discredit); the bounces and auto-replies of the latter come back to the person. Both are
evidence of impersonation, and neither should sit in the inbox as if the person had written it.

What counts (``check``), given the person's own addresses and domains (``OwnNames``):
- forged: the From addr-spec is the person's address or in their domain, and the topmost
  Authentication-Results field of the receiving server the person trusts (``authserv_id``,
  core/authresults.py; every other such field is ignored, anyone can write one) says DMARC
  failed, or, with no DMARC verdict, that no SPF or DKIM pass aligned with the From domain was
  found while SPF or DKIM failed. With no trusted field, or only ``none``/``neutral`` results,
  nothing is flagged: guardmail cannot tell, and a person's own genuine mail must pass.
- shown: the person's address appears in the From display name (or an encoded word) of mail
  sent from another address (the Mailsploit kind of spoofing), whatever the authentication.
- backscatter: a delivery report or auto-reply (``multipart/report``, ``Auto-Submitted``, a
  mailer-daemon sender) whose returned headers (``message/rfc822``, ``text/rfc822-headers``,
  or the copy qmail and Exim quote) claim the person's address in From, but carry no DKIM
  signature of a domain the person's provider signs with (``signing_domains``; the person's
  own domains and their addresses' domains unless configured). Without returned headers, or
  with no signing domains known, nothing is flagged.

Contracts: pure; never raises; bounded: only the header section (core/headers.py's limits) and the
first ``BODY_SCAN`` bytes of the body are read, by linear scans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from guardmail.core.authresults import trusted
from guardmail.core.confusables import fold
from guardmail.core.headers import header_fields, header_section
from guardmail.core.identity import normalize_address, normalize_domain
from guardmail.core.item import Identity, mail_identities

BODY_SCAN = 256 * 1024
_AUTO_SENDERS = ("mailer-daemon", "postmaster")
_RETURNED = re.compile(
    rb"(?im)^content-type:[ \t]*(?:message/(?:rfc822|global|global-headers)"
    rb"|text/rfc822-headers)\b"
)
# Bounces that quote the returned message in plain text (qmail, Exim).
_QUOTED = re.compile(
    rb"(?im)^-* ?(?:below this line is a copy of the message"
    rb"|this is a copy of the message, including all the headers)\.? ?-*[ \t]*\r?$"
)
_PART_END = re.compile(rb"\r?\n\r?\n")
_FAILED = frozenset({"fail", "softfail"})
SHOWN_SOURCES = ("From (display name)", "From (encoded word)")


@dataclass(frozen=True, slots=True)
class Impersonation:
    """``kind``: forged, shown or backscatter; ``why``: a sentence for explain and the journal."""

    kind: str
    why: str


@dataclass(frozen=True, slots=True)
class OwnNames:
    """The person's own addresses (normalised keys) and domains (folded), the authserv-id of
    the receiving server they trust, and the DKIM domains their provider signs with."""

    addresses: frozenset[str]
    domains: tuple[str, ...]
    authserv_id: str
    signing_domains: tuple[str, ...]

    @classmethod
    def build(
        cls,
        addresses: Iterable[str],
        domains: Iterable[str],
        authserv_id: str,
        signing_domains: Iterable[str] = (),
    ) -> OwnNames:
        keys: set[str] = set()
        own_domains: list[str] = []
        for address in addresses:
            norm = normalize_address(address)
            if norm is not None:
                keys.add(norm.key)
                own_domains.append(fold(norm.domain))
        folded = [d for d in (fold(normalize_domain(x)) for x in domains) if d]
        signing = [d for d in (fold(normalize_domain(x)) for x in signing_domains) if d]
        return cls(
            addresses=frozenset(keys),
            domains=tuple(dict.fromkeys(folded)),
            authserv_id=authserv_id.strip().lower(),
            signing_domains=tuple(dict.fromkeys(signing or [*folded, *own_domains])),
        )

    def claims(self, address: str) -> bool:
        """Whether ``address`` is one of the person's, or in one of their domains."""
        norm = normalize_address(address)
        if norm is None:
            return False
        if norm.key in self.addresses:
            return True
        domain = fold(norm.domain)
        return any(domain == d or domain.endswith("." + d) for d in self.domains)


def aligned(a: str, b: str) -> bool:
    """DMARC's relaxed alignment, approximated without the public suffix list: the same
    domain, or one below the other where the shorter has two labels at least."""
    a, b = fold(normalize_domain(a)), fold(normalize_domain(b))
    if not a or not b:
        return False
    if a == b:
        return True
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return "." in short and long_.endswith("." + short)


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2] if value else ""


def _forged(identity: Identity, fields: Sequence[tuple[str, str]], own: OwnNames) -> str | None:
    """Why the message's From (one of the person's) is forged, or None."""
    results = trusted(fields, own.authserv_id)
    if results is None:
        return None
    address = identity.address or ""
    domain = _domain_of(address)
    at = f"at {results.authserv_id}"
    dmarc = [r.result for r in results.of("dmarc")]
    if "pass" in dmarc:
        return None
    if "fail" in dmarc:
        return f"From {address} is yours, but DMARC failed {at}: the mail was not sent by you"
    passes = [
        r
        for r in results.of("dkim")
        if r.result == "pass"
        and aligned(r.prop("header.d") or _domain_of(r.prop("header.i")), domain)
    ]
    passes += [
        r
        for r in results.of("spf")
        if r.result == "pass" and aligned(_domain_of(r.prop("smtp.mailfrom")), domain)
    ]
    if passes:
        return None
    failed = [f"{r.method}={r.result}" for r in (*results.of("spf"), *results.of("dkim"))]
    failed = [f for f in failed if f.partition("=")[2] in _FAILED]
    if not failed:
        return None
    return (
        f"From {address} is yours, but {at} no SPF or DKIM check passed for {domain} and "
        f"{', '.join(failed)}: the mail was not sent by you"
    )


def _is_report(fields: Sequence[tuple[str, str]]) -> bool:
    for name, value in fields:
        low = name.lower()
        text = value.lower()
        if low == "content-type" and "multipart/report" in text:
            return True
        if low == "auto-submitted" and text.strip() not in ("", "no"):
            return True
        if low == "from" and any(s in text for s in _AUTO_SENDERS):
            return True
    return False


def _returned_headers(raw: bytes) -> bytes | None:
    """The header section of the message a report returns, if it carries one."""
    head = header_section(raw)
    body = raw[len(head) : len(head) + BODY_SCAN]
    found = _RETURNED.search(body)
    if found is not None:
        end = _PART_END.search(body, found.end())
        return body[end.end() :] if end else None
    quoted = _QUOTED.search(body)
    if quoted is not None:
        rest = body[quoted.end() :].lstrip(b"\r\n")
        return rest or None
    return None


def _dkim_domains(fields: Iterable[tuple[str, str]]) -> list[str]:
    out = []
    for name, value in fields:
        if name.lower() != "dkim-signature":
            continue
        for tag in value[:4096].split(";"):
            key, eq, val = tag.partition("=")
            if eq and key.strip().lower() == "d":
                out.append("".join(val.split()))
    return out


def _backscatter(raw: bytes, fields: Sequence[tuple[str, str]], own: OwnNames) -> str | None:
    if not own.signing_domains or not _is_report(fields):
        return None
    returned = _returned_headers(raw)
    if returned is None:
        return None
    claimed = [i.address for i in mail_identities(returned) if i.source == "From" and i.address]
    mine = [a for a in claimed if own.claims(a)]
    if not mine:
        return None
    signed = _dkim_domains(header_fields(returned))
    if any(aligned(d, s) for d in signed for s in own.signing_domains):
        return None
    seen = ", ".join(signed) if signed else "none"
    return (
        f"a report about mail sent in your name (From {mine[0]}) that your provider did not "
        f"sign (its DKIM domains: {seen}; yours: {', '.join(own.signing_domains)}): "
        "someone else sent it"
    )


def may_be_backscatter(header: bytes, own: OwnNames) -> bool:
    """Whether a message whose header section is ``header`` is a report ``check`` must read
    the body of (a source that judges by headers first fetches the whole message for it)."""
    if not (own.addresses or own.domains) or not own.signing_domains:
        return False
    return _is_report(header_fields(header))


def check(raw: bytes, identities: Sequence[Identity], own: OwnNames) -> Impersonation | None:
    """Whether ``raw`` (with its ``identities``, core/item.py) impersonates the person."""
    if not own.addresses and not own.domains:
        return None
    fields = header_fields(raw)
    senders = [i for i in identities if i.source == "From" and i.address]
    for identity in senders:
        if own.claims(identity.address or ""):
            why = _forged(identity, fields, own)
            if why is not None:
                return Impersonation("forged", why)
            break
    else:
        for identity in identities:
            if identity.source in SHOWN_SOURCES and own.claims(identity.address or ""):
                sent_from = senders[0].address if senders else "no address"
                return Impersonation(
                    "shown",
                    f"From shows your address {identity.address} but the mail was sent from "
                    f"{sent_from}",
                )
    why = _backscatter(raw, fields, own)
    return Impersonation("backscatter", why) if why is not None else None
