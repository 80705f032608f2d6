"""RFC 3161 trusted timestamps of the vault's signed tree heads.

Contracts:
- What is stamped is a head's signed bytes (``guardmail.vault.signing.signed_bytes``, the file
  ``log/tree-head-N.json`` of a bundle): the TSA signs their SHA-256, so that
  ``openssl ts -verify -data FILE -in TOKEN.tsr -CAfile CA.pem`` checks a token without guardmail.
- ``request`` asks with a fresh nonce and certReq (the TSA puts its certificate in the token), by
  HTTP POST (``application/timestamp-query``) with a timeout and a bound on the reply's size;
  HTTPS certificates are verified. Every failure is ``TimestampFailed`` with a sentence.
- ``check`` accepts a reply only if it is granted, its signature verifies with a certificate
  that chains to one of ``roots`` and was valid *at the token's own time* (genTime), carries the
  critical extended key usage timeStamping, and its message imprint is the SHA-256 of the
  message (and the request's nonce, when given). It returns the token's time.
- A token is stored beside its head (storage ``tree_head_timestamps``) only after ``check``
  passed, with the root certificate(s) it chained to, so that a bundle carries them.
- Nothing here runs inside an archiving transaction: the daemon asks in its own thread
  (``guardmail.daemon.timestamper``) and a TSA that is down delays only the next timestamp.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from guardmail.errors import TimestampFailed

MAX_REPLY = 256 * 1024  # a token with a certificate chain is a few KB
QUERY_TYPE, REPLY_TYPE = "application/timestamp-query", "application/timestamp-reply"


def load_roots(ca_file: Path | None) -> list[x509.Certificate]:
    """The TSA's trust anchors: ``ca_file`` (PEM), or the system's CA bundle when None.
    TimestampFailed if there is none to read."""
    path = ca_file
    if path is None:
        paths = ssl.get_default_verify_paths()
        found = paths.cafile or paths.openssl_cafile
        path = Path(found) if found else None
    if path is None:
        raise TimestampFailed("no CA file for the TSA: set evidence.timestamp.ca_file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TimestampFailed(f"the TSA's CA file {path} cannot be read: {exc}") from None
    roots, refused = pem_certificates(data)
    if not roots:
        why = refused[0] if refused else "no PEM certificate in it"
        raise TimestampFailed(f"the TSA's CA file {path} cannot be read: {why}")
    return roots


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.{0,65536}?-----END CERTIFICATE-----", re.DOTALL
)


def pem_certificates(data: bytes) -> tuple[list[x509.Certificate], list[str]]:
    """Every certificate of a PEM bundle that parses, and why each other one did not. One at a
    time, because a system bundle may hold a certificate that cryptography refuses, or warns it
    will refuse (Debian's has nine roots with serial number 0, GoDaddy's and Starfield's among
    them): that one is left out instead of refusing the whole bundle, and with it every
    timestamp. The warning is not printed: it is about the bundle, not about guardmail."""
    roots: list[x509.Certificate] = []
    refused: list[str] = []
    for block in _PEM_CERTIFICATE.findall(data):
        with warnings.catch_warnings():  # only this category, only here: nothing else warns it
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                roots.append(x509.load_pem_x509_certificate(block))
            except ValueError as exc:
                refused.append(str(exc))
    return roots, refused


def _decode(reply: bytes) -> TimeStampResponse:
    try:
        return decode_timestamp_response(reply)
    except ValueError as exc:
        raise TimestampFailed(f"the TSA's reply is not an RFC 3161 response ({exc})") from None


def check(
    reply: bytes, message: bytes, roots: Sequence[x509.Certificate], *, nonce: int | None = None
) -> datetime:
    """The token's time (UTC) if ``reply`` is a good token over ``message`` (module contract);
    TimestampFailed naming what is wrong otherwise."""
    response = _decode(reply)
    builder = VerifierBuilder(roots=list(roots), nonce=nonce)
    try:
        verifier = builder.build()
        verifier.verify_message(response, message)
    except (VerificationError, ValueError) as exc:
        raise TimestampFailed(f"the timestamp token does not verify: {exc}") from None
    when = response.tst_info.gen_time
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def anchors(reply: bytes, message: bytes, roots: Sequence[x509.Certificate]) -> str:
    """The PEM of the root(s) among ``roots`` the token chains to (among those its certificates
    name, each checked on its own: a CA's old and new root share a name); all of ``roots`` if
    that cannot be narrowed down."""
    response = _decode(reply)
    certs = [x509.load_der_x509_certificate(c) for c in response.signed_data.certificates]
    issuers = {c.issuer for c in certs} | {c.subject for c in certs}
    chained = [r for r in roots if r.subject in issuers and _chains(reply, message, r)]
    return "".join(r.public_bytes(Encoding.PEM).decode("ascii") for r in chained or roots)


def _chains(reply: bytes, message: bytes, root: x509.Certificate) -> bool:
    try:
        check(reply, message, [root])
    except TimestampFailed:
        return False
    return True


def request(url: str, message: bytes, *, timeout: float) -> tuple[bytes, int]:
    """Ask the TSA at ``url`` for a token over SHA-256(``message``): (its reply, the nonce
    asked with). The reply is not checked yet (``check``)."""
    query = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    nonce = query.nonce
    http = urllib.request.Request(
        url,
        data=query.as_bytes(),
        method="POST",
        headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
    )
    try:
        with urllib.request.urlopen(http, timeout=timeout) as answer:
            body: bytes = answer.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampFailed(f"the TSA {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TimestampFailed(f"the TSA {url} cannot be reached: {reason}") from None
    if len(body) > MAX_REPLY:
        raise TimestampFailed(f"the TSA {url} answered more than {MAX_REPLY} bytes")
    if nonce is None:
        raise TimestampFailed("the timestamp request was built without a nonce")
    return body, nonce


def message_digest(message: bytes) -> str:
    """What a token's imprint must be, hex (for ``openssl ts -verify -digest``)."""
    return hashlib.sha256(message).hexdigest()
