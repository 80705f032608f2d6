"""The bounds of the DKIM/ARC check at receipt (``guardmail.vault.dkimcheck``, invariant 6): the
sender writes the message and its domain's DNS, so each way past a bound ends in a result with
a reason, never an exception and never unbounded work."""

from __future__ import annotations

import dkim
import pytest

from guardmail.vault.dkimcheck import MAX_FIELD, Limits, check
from guardmail.vault.keyfetch import StaticResolver
from tests.unit.test_dkim_receipt import NAME, Key, make_key, signed


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


def sealed(key: Key) -> bytes:
    """A DKIM-signed message with one ARC set over it."""
    raw = b"Authentication-Results: mx.example.net; dkim=pass\r\n" + signed(key)
    arc = dkim.arc_sign(
        raw, b"sel", b"example.net", key.private_pem, b"mx.example.net", include_headers=None
    )
    return b"".join(arc) + raw


def test_a_message_over_the_size_bound_is_not_checked_at_all(key: Key) -> None:
    raw = signed(key)
    asked = StaticResolver({})  # any lookup would be a permerror, and none may happen
    found = check(raw, asked, limits=Limits(max_bytes=len(raw) - 1))
    assert (found.signatures, found.snapshots, found.arc_result) == ((), (), "skipped")
    assert found.note == f"not checked: {len(raw)} bytes (at most {len(raw) - 1})"
    assert found.arc_reason == found.note


def test_once_the_time_budget_is_spent_signatures_and_arc_chain_are_skipped(key: Key) -> None:
    raw = sealed(key)
    found = check(raw, StaticResolver({NAME: key.record}), limits=Limits(seconds=-1))
    assert [(s.kind, s.result, s.reason) for s in found.signatures] == [
        ("dkim", "skipped", "time budget spent")
    ]
    assert (found.arc_result, found.arc_reason) == ("skipped", "time budget spent")
    assert found.snapshots == ()  # nothing was looked up


def test_an_arc_field_over_the_bound_fails_the_chain_unparsed(key: Key) -> None:
    raw = sealed(key)
    huge = b"ARC-Authentication-Results: i=1; mx.example.net; x=" + b"a" * MAX_FIELD + b"\r\n"
    found = check(huge + raw, StaticResolver({NAME: key.record}))
    assert (found.arc_result, found.arc_reason) == ("fail", f"an ARC field over {MAX_FIELD} bytes")
    assert [(s.kind, s.result) for s in found.signatures] == [("dkim", "pass")]


def test_a_message_dkimpy_cannot_parse_is_a_permerror_per_signature(key: Key) -> None:
    # A header line without a colon: dkimpy refuses the whole message.
    raw = signed(key).replace(b"Subject: hi\r\n", b"Subject: hi\r\n\x00no colon here\r\n")
    found = check(raw, StaticResolver({NAME: key.record}))
    assert [(s.domain, s.selector, s.result, s.reason) for s in found.signatures] == [
        ("example.net", "sel", "permerror", "message unparseable")
    ]


def test_a_key_that_is_not_the_signers_fails_and_names_the_key_it_used(key: Key) -> None:
    other = make_key()
    found = check(signed(key), StaticResolver({NAME: other.record}))
    sig, snap = found.signatures[0], found.snapshots[0]
    assert (sig.result, sig.reason) == ("fail", "signature does not verify")
    assert sig.key_sha256 == snap.sha256 and snap.record == other.record


def test_an_unusable_key_record_is_a_permerror_that_names_it(key: Key) -> None:
    record = b"v=DKIM1; k=rsa; p=!!!notbase64"
    found = check(signed(key), StaticResolver({NAME: record}))
    (sig,) = found.signatures
    assert sig.result == "permerror"
    assert sig.reason.startswith(f"unusable key record at {NAME}: ")
    assert found.snapshots[0].record == record  # kept: it is what the domain published


def test_a_resolver_that_breaks_is_contained_per_signature_and_per_arc_chain(key: Key) -> None:
    broken = StaticResolver({NAME: RuntimeError("resolver bug")})
    found = check(sealed(key), broken)
    assert [(s.kind, s.result, s.reason) for s in found.signatures] == [
        ("dkim", "permerror", "RuntimeError: resolver bug")
    ]
    assert (found.arc_result, found.arc_reason) == ("fail", "RuntimeError: resolver bug")
