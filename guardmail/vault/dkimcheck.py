"""DKIM signatures and the ARC chain of a message, checked with dkimpy, every key record kept.

``check`` verifies a message's signatures, fetching each key record through a ``Resolver``, and
returns what it found: one ``Signature`` per DKIM-Signature and per ARC set's message signature
and seal, and every ``Snapshot`` fetched (the TXT record as fetched, when, from which resolver).
``recheck`` runs the same verification offline, the records served from snapshots: a message
checks years later against the key it was signed with, after the provider rotated it.

The offender writes the message and controls their domain's DNS, so everything is bounded
(invariant 6): at most ``Limits.signatures`` DKIM signatures and ``Limits.arc_sets`` ARC sets
are verified (the rest are ``skipped``); a signature field over ``MAX_FIELD`` bytes is not
parsed; a key record over ``keyfetch.MAX_RECORD`` bytes, an RSA modulus over ``MAX_RSA_BITS``
or a public exponent over ``MAX_EXPONENT_BITS`` is refused before any arithmetic; each lookup
ends within ``Limits.lookup_seconds`` and all of one message's lookups within
``Limits.dns_budget``; after ``Limits.seconds`` of work the remaining signatures are ``skipped``.
A message over ``Limits.max_bytes`` is not checked at all.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from guardmail.core.authresults import trusted_field
from guardmail.core.headers import header_fields
from guardmail.vault.dkimlimits import DEFAULT_LIMITS, Limits
from guardmail.vault.keyfetch import MAX_RECORD, LookupFailed, Resolver, StaticResolver

MAX_FIELD = 8 * 1024  # bytes of one DKIM-Signature, ARC-Message-Signature or ARC-Seal value
MAX_RSA_BITS = 8192
MAX_EXPONENT_BITS = 32  # real keys use 65537; a huge exponent makes one check cost seconds
__all__ = ["DEFAULT_LIMITS", "Limits"]  # re-exported: the bounds live in dkimlimits

PASS, FAIL, TEMPERROR, PERMERROR, SKIPPED = "pass", "fail", "temperror", "permerror", "skipped"

# dkimpy logs every failure at ERROR through this logger; the results say it instead.
_QUIET = logging.getLogger("guardmail.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_QUIET.setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A key record as fetched: ``record`` None when the lookup failed (``problem`` says why)."""

    selector: str
    domain: str
    record: bytes | None
    fetched_at: datetime
    resolver: str
    problem: str = ""

    @property
    def sha256(self) -> str | None:
        return None if self.record is None else hashlib.sha256(self.record).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    kind: str  # dkim, arc-ams, arc-seal
    domain: str
    selector: str
    algorithm: str
    result: str
    reason: str
    key_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    signatures: tuple[Signature, ...]
    snapshots: tuple[Snapshot, ...]
    arc_result: str  # pass, fail, none, skipped
    arc_reason: str
    note: str = ""


class _Keys:
    """dkimpy's ``dnsfunc``: each name fetched once per message, bounded, every answer kept."""

    def __init__(self, resolver: Resolver, limits: Limits, clock: Callable[[], datetime]) -> None:
        self.resolver = resolver
        self.limits = limits
        self.clock = clock
        self.spent = 0.0
        self.snapshots: dict[str, Snapshot] = {}
        self.problem: tuple[str, str] | None = None  # (result, reason) of the last lookup

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii", "replace").rstrip(".").lower()
        snap = self.snapshots.get(qname)
        if snap is None:
            snap = self._fetch(qname)
            self.snapshots[qname] = snap
        self.problem = None
        if snap.record is None:
            temporary = not snap.problem.startswith("permanent: ")
            reason = snap.problem.removeprefix("permanent: ")
            self.problem = (TEMPERROR if temporary else PERMERROR, reason)
            if temporary:
                raise dkim.DnsTimeoutError(reason)
            raise dkim.KeyFormatError(reason)
        refused = _refused(qname, snap.record)
        if refused:
            self.problem = (PERMERROR, refused)
            raise dkim.KeyFormatError(refused)
        return snap.record

    def _fetch(self, qname: str) -> Snapshot:
        selector, _, domain = qname.partition("._domainkey.")
        left = self.limits.dns_budget - self.spent
        at = self.clock()
        if left <= 0:
            return Snapshot(
                selector=selector,
                domain=domain,
                record=None,
                fetched_at=at,
                resolver=self.resolver.name,
                problem=f"not looked up: the message's DNS budget of "
                f"{self.limits.dns_budget:g} s is spent",
            )
        started = time.monotonic()
        record: bytes | None = None
        try:
            got = self.resolver.txt(qname, lifetime=min(self.limits.lookup_seconds, left))
            problem = ""
            if len(got) > MAX_RECORD:
                problem = f"permanent: {qname}: record of {len(got)} bytes (at most {MAX_RECORD})"
            else:
                record = got
        except LookupFailed as exc:
            record = None
            problem = str(exc) if exc.temporary else f"permanent: {exc}"
        finally:
            self.spent += time.monotonic() - started
        return Snapshot(
            selector=selector,
            domain=domain,
            record=record,
            fetched_at=at,
            resolver=self.resolver.name,
            problem=problem,
        )


def _refused(qname: str, record: bytes) -> str:
    """Why a key record is not used (too big to check cheaply), or ""."""
    try:
        pk, keysize, ktag, _ = dkim.evaluate_pk(qname.encode(), record)
    except (dkim.DKIMException, ValueError, TypeError, KeyError) as exc:
        return f"unusable key record at {qname}: {exc}"
    if ktag == b"rsa" and isinstance(pk, dict):
        if keysize is not None and keysize > MAX_RSA_BITS:
            return f"RSA key of {keysize} bits at {qname} (at most {MAX_RSA_BITS} checked)"
        exponent = pk.get("publicExponent", 0)
        if isinstance(exponent, int) and exponent.bit_length() > MAX_EXPONENT_BITS:
            return f"RSA public exponent of {exponent.bit_length()} bits at {qname}"
    return ""


def _tags(value: bytes) -> dict[bytes, bytes]:
    if len(value) > MAX_FIELD:
        return {}
    try:
        tags: dict[bytes, bytes] = parse_tag_value(value)
        return tags
    except (InvalidTagValueList, ValueError, IndexError):
        return {}


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


def check(
    raw: bytes,
    resolver: Resolver,
    *,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Check:
    """Verify ``raw``'s DKIM signatures and ARC chain; never raises for any input."""
    if len(raw) > limits.max_bytes:
        note = f"not checked: {len(raw)} bytes (at most {limits.max_bytes})"
        return Check(signatures=(), snapshots=(), arc_result=SKIPPED, arc_reason=note, note=note)
    keys = _Keys(resolver, limits, clock)
    deadline = time.monotonic() + limits.seconds
    signatures = _dkim(raw, keys, limits, deadline)
    arc_result, arc_reason, arc = _arc(raw, keys, limits, deadline)
    snaps = tuple(keys.snapshots.values())
    return Check(
        signatures=signatures + arc,
        snapshots=snaps,
        arc_result=arc_result,
        arc_reason=arc_reason,
    )


def recheck(raw: bytes, records: Mapping[str, bytes], *, limits: Limits = DEFAULT_LIMITS) -> Check:
    """``check`` offline: key records from ``records`` (``SELECTOR._domainkey.DOMAIN`` ->
    the record as fetched), none fetched; a name without a record is a permerror."""
    return check(raw, StaticResolver(records, name="snapshots"), limits=limits)


def _message(raw: bytes) -> dkim.DKIM | None:
    try:
        return dkim.DKIM(raw, logger=_QUIET, minkey=1024)
    except (dkim.DKIMException, ValueError, IndexError):
        return None


def _dkim(raw: bytes, keys: _Keys, limits: Limits, deadline: float) -> tuple[Signature, ...]:
    fields = [v for n, v in _raw_fields(raw) if n == b"dkim-signature"]
    if not fields:
        return ()
    d = _message(raw)
    out: list[Signature] = []
    for idx, value in enumerate(fields):
        tags = _tags(value)
        base = {
            "kind": "dkim",
            "domain": _text(tags.get(b"d")),
            "selector": _text(tags.get(b"s")),
            "algorithm": _text(tags.get(b"a")),
        }
        if idx >= limits.signatures:
            out.append(Signature(**base, result=SKIPPED, reason=f"over {limits.signatures}"))
            continue
        if time.monotonic() > deadline:
            out.append(Signature(**base, result=SKIPPED, reason="time budget spent"))
            continue
        if len(value) > MAX_FIELD:
            out.append(Signature(**base, result=PERMERROR, reason=f"over {MAX_FIELD} bytes"))
            continue
        if d is None:
            out.append(Signature(**base, result=PERMERROR, reason="message unparseable"))
            continue
        out.append(_one(d, idx, base, keys))
    return tuple(out)


def _one(d: dkim.DKIM, idx: int, base: dict[str, Any], keys: _Keys) -> Signature:
    keys.problem = None
    qname = f"{base['selector']}._domainkey.{base['domain']}".lower()
    try:
        ok = bool(d.verify(idx=idx, dnsfunc=keys))
    except dkim.DKIMException as exc:
        result = FAIL if isinstance(exc, dkim.ValidationError) else PERMERROR
        return Signature(**base, result=result, reason=str(exc)[:300], key_sha256=_sha(keys, qname))
    except Exception as exc:  # dkimpy on hostile input: contained per signature
        return Signature(**base, result=PERMERROR, reason=f"{type(exc).__name__}: {exc}"[:300])
    if ok:
        return Signature(**base, result=PASS, reason="", key_sha256=_sha(keys, qname))
    if keys.problem is not None:
        result, reason = keys.problem
        return Signature(**base, result=result, reason=reason, key_sha256=_sha(keys, qname))
    return Signature(
        **base, result=FAIL, reason="signature does not verify", key_sha256=_sha(keys, qname)
    )


def _sha(keys: _Keys, qname: str) -> str | None:
    snap = keys.snapshots.get(qname)
    return None if snap is None else snap.sha256


def _raw_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    return [(n.lower().encode("ascii", "replace"), v.encode()) for n, v in header_fields(raw)]


def _arc(
    raw: bytes, keys: _Keys, limits: Limits, deadline: float
) -> tuple[str, str, tuple[Signature, ...]]:
    seals = [v for n, v in _raw_fields(raw) if n == b"arc-seal"]
    if not seals:
        return "none", "no ARC set", ()
    if len(seals) > limits.arc_sets:
        return SKIPPED, f"{len(seals)} ARC sets (at most {limits.arc_sets} checked)", ()
    if time.monotonic() > deadline:
        return SKIPPED, "time budget spent", ()
    if any(len(v) > MAX_FIELD for n, v in _raw_fields(raw) if n.startswith(b"arc-")):
        return "fail", f"an ARC field over {MAX_FIELD} bytes", ()
    try:
        cv, results, reason = dkim.ARC(raw, logger=_QUIET, minkey=1024).verify(dnsfunc=keys)
    except Exception as exc:  # dkimpy on hostile input: contained
        return "fail", f"{type(exc).__name__}: {exc}"[:300], ()
    out: list[Signature] = []
    for r in results:
        for kind, prefix, valid in _ARC_PARTS:
            domain, selector = _text(r.get(f"{prefix}-domain")), _text(r.get(f"{prefix}-selector"))
            qname = f"{selector}._domainkey.{domain}".lower()
            out.append(
                Signature(
                    kind=kind,
                    domain=domain,
                    selector=selector,
                    algorithm=f"i={r.get('instance')}",
                    result=PASS if r.get(valid) else FAIL,
                    reason="" if r.get(valid) else "does not verify",
                    key_sha256=_sha(keys, qname),
                )
            )
    return _text(cv) or "none", str(reason)[:300], tuple(out)


_ARC_PARTS = (("arc-ams", "ams", "ams-valid"), ("arc-seal", "as", "as-valid"))


def trusted_results(raw: bytes, authserv_id: str) -> str:
    """The topmost Authentication-Results field whose authserv-id is ``authserv_id`` (RFC 8601:
    the trusted server adds its own on top and removes look-alikes below), or "". Every other
    server's field is ignored: anyone upstream can write one. The same field impersonation
    judges by (guardmail.core.authresults)."""
    return (trusted_field(header_fields(raw), authserv_id) or "").strip()
