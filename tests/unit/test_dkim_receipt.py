"""Authenticity at receipt: DKIM and ARC checked after archiving, key records kept, checked again
offline from them (``guardmail evidence verify-dkim``, the bundle) after the key rotates."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from guardmail.commands.evidence_dkim import report
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import OffenderRule, RuleSet, Verdict
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.export.verify import verify_bundle
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import receipt_workers, receipts
from guardmail.vault.dkimcheck import MAX_RSA_BITS, Limits, check, recheck, trusted_results
from guardmail.vault.keyfetch import LookupFailed, StaticResolver
from guardmail.vault.receipt_records import recheck_stored, stored
from guardmail.vault.receipts import ReceiptChecker
from guardmail.vault.store import Vault
from tests.conftest import wait_for

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])
NAME = "sel._domainkey.example.net"
MESSAGE = (
    b"From: Stalker <stalker@example.net>\r\nTo: jane@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <1@example.net>\r\n\r\nI know where you live.\r\n"
)


@dataclass(frozen=True)
class Key:
    private_pem: bytes
    record: bytes


def make_key(bits: int = 2048, exponent: int = 65537) -> Key:
    k = rsa.generate_private_key(public_exponent=exponent, key_size=bits)
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key(private_pem=pem, record=b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


def signed(key: Key, message: bytes = MESSAGE, selector: bytes = b"sel") -> bytes:
    sig = dkim.sign(
        message, selector, b"example.net", key.private_pem, include_headers=[b"from", b"subject"]
    )
    return bytes(sig) + message


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "db.sqlite3")
    yield s
    s.close()


def test_signed_message_verifies_and_one_changed_body_byte_fails(key: Key) -> None:
    raw = signed(key)
    dns = StaticResolver({NAME: key.record})
    good = check(raw, dns, clock=lambda: NOW)
    assert [(s.kind, s.domain, s.selector, s.algorithm, s.result) for s in good.signatures] == [
        ("dkim", "example.net", "sel", "rsa-sha256", "pass")
    ]
    assert [(s.selector, s.domain, s.record, s.fetched_at) for s in good.snapshots] == [
        ("sel", "example.net", key.record, NOW)
    ]
    bad = check(raw.replace(b"live.", b"live!"), dns)
    assert bad.signatures[0].result == "fail"
    assert "body hash mismatch" in bad.signatures[0].reason
    # A Maildir keeps LF line ends: the signature was made over CRLF and still verifies.
    assert check(raw.replace(b"\r\n", b"\n"), dns).signatures[0].result == "pass"


def test_after_the_key_rotates_the_snapshot_still_verifies(
    key: Key, storage: SQLiteStorage
) -> None:
    raw = signed(key)
    dns = StaticResolver({NAME: key.record}, name="test resolver")
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=dns, clock=lambda: NOW)
    checker.check_now(seq=1, sha256="a" * 64, raw=raw)
    dns.records.clear()  # rotated: DNS no longer has the key
    assert check(raw, dns).signatures[0].result == "permerror"
    kept = stored(storage, "t", 1)
    assert kept.check is not None and kept.check.resolver == "test resolver"
    (snap,) = kept.keys.values()
    assert (snap.record, snap.fetched_at, snap.resolver) == (key.record, NOW.isoformat(), dns.name)
    assert [s.result for s in recheck_stored(raw, kept)] == ["pass"]
    lines, ok = report(1, raw, kept)
    assert ok and "from the snapshot pass" in lines[1]
    lines, ok = report(1, raw.replace(b"live.", b"live!"), kept)
    assert not ok and "from the snapshot fail" in lines[1]


def test_a_key_record_is_stored_once_per_selector_domain_and_hash(
    key: Key, storage: SQLiteStorage
) -> None:
    dns = StaticResolver({NAME: key.record})
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=dns, clock=lambda: NOW)
    for seq in (1, 2):
        checker.check_now(seq=seq, sha256="a" * 64, raw=signed(key))
    with storage.read() as tx:
        n = tx._conn.execute("SELECT count(*) FROM dkim_keys").fetchone()[0]  # noqa: SLF001
    assert n == 1
    assert stored(storage, "t", 2).keys == stored(storage, "t", 1).keys


def test_failed_lookups_are_recorded_with_why(key: Key, storage: SQLiteStorage) -> None:
    raw = signed(key)
    down = StaticResolver({NAME: LookupFailed(f"{NAME}: no answer within 2 s", temporary=True)})
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=down, clock=lambda: NOW)
    checker.check_now(seq=7, sha256="a" * 64, raw=raw)
    (result,) = stored(storage, "t", 7).results
    assert (result.result, result.domain, result.key_sha256) == ("temperror", "example.net", None)
    assert "no answer within 2 s" in result.reason
    gone = check(raw, StaticResolver({}))
    assert gone.signatures[0].result == "permerror" and "NXDOMAIN" in gone.signatures[0].reason


class BlockedResolver:
    """A resolver that does not answer until the test lets it (a dead DNS server)."""

    name = "blocked"

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()

    def txt(self, qname: str, *, lifetime: float) -> bytes:
        self.asked.set()
        self.release.wait(30)
        raise LookupFailed(f"{qname}: no answer within {lifetime:g} s", temporary=True)


class Actor:
    def __init__(self) -> None:
        self.acted: list[str] = []

    async def act(self, item: Item, verdict: Verdict) -> str:
        self.acted.append(item.source_ref)
        return "moved"


def test_a_dns_lookup_that_hangs_delays_neither_archive_nor_action(
    tmp_path: Path, key: Key, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    dns = BlockedResolver()
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=dns, clock=lambda: NOW)
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW, receipts=checker)
    actor = Actor()
    item = mail_item(signed(key), tenant="t", account="a", source_ref="new/1", received_at=NOW)
    try:
        # The lookup never answers while the item is processed: were it awaited, this would hang.
        outcome = asyncio.run(asyncio.wait_for(pipeline.process(item, actor), 30))
        assert dns.asked.wait(30)
        assert actor.acted == ["new/1"] and outcome.receipt is not None
        assert [r.kind for r in vault.rows()] == ["archived", "action"]
        assert stored(storage, "t", outcome.receipt.seq).check is None  # still looking up
    finally:
        dns.release.set()
        assert checker.drain(30)
        checker.close()
    (result,) = stored(storage, "t", outcome.receipt.seq).results
    assert result.result == "temperror"


def test_past_its_memory_bound_the_queue_reads_the_item_back_from_the_vault(
    tmp_path: Path, key: Key, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    raw = signed(key)
    receipts_ = [
        vault.put(raw + b"x" * n, source_ref=f"new/{n}", metadata={}, now=NOW) for n in range(5)
    ]
    dns = BlockedResolver()
    loaded: list[str] = []

    def load(sha256: str) -> bytes:
        loaded.append(sha256)
        return vault.blobs.get(sha256)

    checker = ReceiptChecker(
        storage=storage, tenant="t", resolver=dns, load=load, backlog_bytes=len(raw) + 3
    )
    try:
        first, *rest = receipts_
        assert checker.submit(seq=first.seq, sha256=first.sha256, raw=raw)
        assert dns.asked.wait(30)  # the worker holds the first; the rest queue behind it
        for n, r in enumerate(rest, start=1):
            assert checker.submit(seq=r.seq, sha256=r.sha256, raw=raw + b"x" * n)
    finally:
        dns.release.set()
        assert checker.drain(30)
        checker.close()
    # Only the first of the four queued fitted the bound; three were read back, none dropped.
    assert loaded == [r.sha256 for r in receipts_[2:]]
    checks = [stored(storage, "t", r.seq).check for r in receipts_]
    assert all(c is not None for c in checks)
    assert [c.sha256 for c in checks if c is not None] == [r.sha256 for r in receipts_]


def test_a_closed_checker_refuses_the_check_never_the_item(storage: SQLiteStorage) -> None:
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=StaticResolver({}))
    checker.close()
    assert not checker.submit(seq=1, sha256="a" * 64, raw=MESSAGE)
    assert stored(storage, "t", 1).check is None


def test_checks_are_recorded_a_batch_a_transaction(
    key: Key,
    storage: SQLiteStorage,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """And logged at INFO once a batch: a lone check as receipt.checked, a batch of several as
    one receipts.checked (each of its receipt.checked at DEBUG)."""
    dns = BlockedResolver()
    commits: list[int] = []
    checker = ReceiptChecker(storage=storage, tenant="t", resolver=dns)
    real = checker.record_many

    def counted(done: list[receipts.Found]) -> None:
        commits.append(len(done))
        real(done)

    monkeypatch.setattr(checker, "record_many", counted)
    # A loaded machine: still one batch.
    monkeypatch.setattr(receipt_workers, "COMMIT_SECONDS", 600.0)
    raw = signed(key)
    caplog.set_level(logging.INFO, logger="guardmail")
    try:
        assert checker.submit(seq=1, sha256="a" * 64, raw=raw)
        assert dns.asked.wait(30)  # held on the first: the next 30 queue up meanwhile
        for seq in range(2, 32):
            assert checker.submit(seq=seq, sha256="a" * 64, raw=raw)
    finally:
        dns.release.set()
        assert checker.drain(30)
        checker.close()
    assert commits == [1, 30]
    info = [r for r in caplog.records if r.levelno >= logging.INFO and "checked" in r.msg]
    assert [(r.getMessage(), getattr(r, "gm_fields", {}).get("count")) for r in info] == [
        ("receipt.checked", None),
        ("receipts.checked", 30),
    ]
    assert all(stored(storage, "t", seq).check is not None for seq in range(1, 32))


def test_signatures_past_the_cap_are_skipped_not_verified(key: Key) -> None:
    raw = signed(key)
    for _ in range(3):
        raw = signed(key, raw)
    found = check(raw, StaticResolver({NAME: key.record}), limits=Limits(signatures=2))
    assert [s.result for s in found.signatures] == ["pass", "pass", "skipped", "skipped"]


def test_one_lookup_per_key_and_a_spent_dns_budget_stops_lookups(key: Key) -> None:
    raw = signed(key, signed(key, selector=b"other"))
    asked: list[str] = []

    class Slow:
        name = "slow"

        def txt(self, qname: str, *, lifetime: float) -> bytes:
            asked.append(qname)
            raise LookupFailed("timeout", temporary=True)

    found = check(raw + b"", Slow(), limits=Limits(dns_budget=1e-9))
    assert len(asked) == 1  # the budget is spent by the first lookup
    assert "budget" in found.signatures[1].reason
    again = signed(key, signed(key))
    asked.clear()
    check(again, Slow())
    assert asked == [NAME]


def public_record(exponent: int, bits: int) -> bytes:
    """A key record of any size and exponent (no private key: checking must refuse it first)."""
    n = secrets.randbits(bits) | 1 | (1 << (bits - 1))
    der = (
        rsa.RSAPublicNumbers(exponent, n)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.mark.parametrize(
    ("exponent", "bits", "why"),
    [(65537, MAX_RSA_BITS + 1024, "RSA key of"), (2**1000 + 1, 2048, "public exponent")],
)
def test_oversized_keys_and_exponents_are_refused_before_any_arithmetic(
    key: Key, exponent: int, bits: int, why: str
) -> None:
    record = public_record(exponent, bits)
    found = check(signed(key), StaticResolver({NAME: record}))
    assert found.signatures[0].result == "permerror" and why in found.signatures[0].reason
    assert found.snapshots[0].record == record  # kept: it is what the domain published


def test_a_key_record_over_the_size_cap_is_neither_used_nor_kept(key: Key) -> None:
    huge = StaticResolver({NAME: b"v=DKIM1; p=" + b"A" * 5000})
    found = check(signed(key), huge)
    assert found.signatures[0].result == "permerror" and "5011 bytes" in found.signatures[0].reason
    assert found.snapshots[0].record is None


def test_only_the_trusted_servers_topmost_authentication_results_is_kept() -> None:
    raw = (
        b"Authentication-Results: mx.example.org; dkim=pass header.d=example.net\r\n"
        b"Authentication-Results: evil.example; dkim=pass\r\n"
        b"Authentication-Results: mx.example.org 1; dkim=pass (forged below)\r\n" + MESSAGE
    )
    assert trusted_results(raw, "MX.example.org") == (
        "mx.example.org; dkim=pass header.d=example.net"
    )
    assert trusted_results(raw, "") == ""
    assert trusted_results(raw, "other.example") == ""


def test_hostile_signature_fields_never_raise(key: Key) -> None:
    dns = StaticResolver({NAME: key.record})
    for field in (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=sel; h=from; bh=; b=\r\n",
        b"DKIM-Signature: garbage\r\n",
        b"DKIM-Signature: v=1; d=" + b"x" * 20000 + b"\r\n",
        b"ARC-Seal: i=1; cv=none\r\n" * 20,
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.net; s=sel; b=AAAA\r\n",
    ):
        found = check(field + MESSAGE, dns)
        assert all(s.result != "pass" for s in found.signatures)
    assert check(b"", dns).signatures == ()


def test_arc_chain_is_verified_and_its_keys_kept(key: Key) -> None:
    raw = b"Authentication-Results: mx.example.net; dkim=pass\r\n" + signed(key)
    arc = dkim.arc_sign(
        raw, b"sel", b"example.net", key.private_pem, b"mx.example.net", include_headers=None
    )
    sealed = b"".join(arc) + raw
    found = check(sealed, StaticResolver({NAME: key.record}))
    assert found.arc_result == "pass"
    assert {(s.kind, s.result) for s in found.signatures} == {
        ("dkim", "pass"),
        ("arc-ams", "pass"),
        ("arc-seal", "pass"),
    }
    assert [s.result for s in recheck(sealed, {NAME: key.record}).signatures] == ["pass"] * 3


def test_bundle_carries_the_snapshots_and_checks_them_offline(
    tmp_path: Path, key: Key, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "jane")
    dns = StaticResolver({NAME: key.record})
    checker = ReceiptChecker(storage=storage, tenant="jane", resolver=dns, clock=lambda: NOW)
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW, receipts=checker)
    item = mail_item(signed(key), tenant="jane", account="a", source_ref="n/1", received_at=NOW)
    asyncio.run(pipeline.process(item, Actor()))
    assert checker.drain(30)
    checker.close()
    dns.records.clear()
    evidence = select(vault.rows(), tenant="jane", criteria=Criteria())
    out = write_bundle(vault, evidence, tmp_path / "bundle", now=NOW, version="9.9").path
    assert verify_bundle(out) == []
    keys = list((out / "dkim" / "keys").iterdir())
    assert [k.read_bytes() for k in keys] == [key.record]
    readme = (out / "README.txt").read_text()
    script = re.search(
        r"^    python3 - <<'EOF'\n    import json, dkim\n.*?^    EOF$", readme, re.S | re.M
    )
    assert script is not None
    code = "\n".join(line[4:] for line in script.group(0).splitlines())
    code = code.replace("python3", sys.executable, 1)
    ran = subprocess.run(["bash", "-c", code], cwd=out, capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and "at receipt: pass now: pass" in ran.stdout, ran.stderr
    (item_file,) = (out / "items").iterdir()
    item_file.write_bytes(item_file.read_bytes().replace(b"live.", b"live!"))
    assert any(p.startswith("dkim: items/") for p in verify_bundle(out))
    keys[0].write_bytes(keys[0].read_bytes() + b" ")
    assert any("does not hash to its name" in p for p in verify_bundle(out))


def test_an_idle_worker_ends_and_the_next_item_starts_another(
    key: Key, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receipt_workers, "IDLE_SECONDS", 0.01)
    workers = receipt_workers.Workers()
    checker = ReceiptChecker(
        storage=storage, tenant="t", resolver=StaticResolver({NAME: key.record}), workers=workers
    )
    try:
        for seq in (1, 2):
            assert checker.submit(seq=seq, sha256="a" * 64, raw=signed(key))
            assert checker.drain(30)
            wait_for(lambda: workers.running == 0, what="the idle worker to end")
    finally:
        checker.close()
    assert [stored(storage, "t", s).results[0].result for s in (1, 2)] == ["pass", "pass"]


def test_a_bug_recording_one_batch_does_not_end_the_worker(
    key: Key, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = ReceiptChecker(
        storage=storage, tenant="t", resolver=StaticResolver({NAME: key.record})
    )
    real = checker.record_many
    calls: list[int] = []

    def first_fails(done: list[receipts.Found]) -> None:
        calls.append(len(done))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        real(done)

    monkeypatch.setattr(checker, "record_many", first_fails)
    try:
        assert checker.submit(seq=1, sha256="a" * 64, raw=signed(key))
        assert checker.drain(30)
        assert checker.submit(seq=2, sha256="a" * 64, raw=signed(key))
        assert checker.drain(30)
    finally:
        checker.close()
    assert [stored(storage, "t", s).check is not None for s in (1, 2)] == [False, True]


def test_checks_a_crash_lost_are_queued_again_at_the_start_and_say_they_are_late(
    tmp_path: Path, key: Key, storage: SQLiteStorage
) -> None:
    """Items archived, the daemon killed before their checks ran: at the next start the checker
    finds the archived mail entries with no check and checks them, read back from the vault;
    each record says when it ran and that it was not at receipt."""
    vault = Vault(tmp_path / "vault", storage, "t")
    raws = [signed(key, MESSAGE.replace(b"<1@", f"<{n}@".encode())) for n in range(3)]
    mail = [
        vault.put(raw, source_ref=f"new/{n}", metadata={"channel": "mail"}, now=NOW)
        for n, raw in enumerate(raws)
    ]
    chat = vault.put(b"<message/>", source_ref="xmpp/1", metadata={"channel": "xmpp"}, now=NOW)
    dns = StaticResolver({NAME: key.record})
    before = ReceiptChecker(storage=storage, tenant="t", resolver=dns, clock=lambda: NOW)
    before.check_now(seq=mail[0].seq, sha256=mail[0].sha256, raw=raws[0])  # before the kill
    later = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    restarted = ReceiptChecker(
        storage=storage, tenant="t", resolver=dns, clock=lambda: later, load=vault.blobs.get
    )
    try:
        restarted.catch_up(limit=1)
        assert restarted.drain(30)
        assert restarted.caught_up == 1  # bounded
        restarted.catch_up()
        assert restarted.drain(30)
        assert restarted.caught_up == 1
        restarted.catch_up()
        assert restarted.drain(30)
        assert restarted.caught_up == 0  # nothing left: a later start asks nothing again
    finally:
        restarted.close()
    first = stored(storage, "t", mail[0].seq).check
    assert first is not None and first.checked_at == NOW.isoformat() and first.note == ""
    for r in mail[1:]:
        kept = stored(storage, "t", r.seq)
        assert kept.check is not None and kept.check.sha256 == r.sha256
        assert kept.check.checked_at == later.isoformat()
        assert kept.check.note.startswith(receipts.LATE_NOTE)
        assert [s.result for s in kept.results] == ["pass"]
    assert stored(storage, "t", chat.seq).check is None  # XMPP stanzas are not DKIM-checked
