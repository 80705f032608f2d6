"""Archiving cost per item with the DKIM check at receipt on and off, DNS excluded, in one run.

Two vaults in one temp directory, each its own SQLite database, archive the same DKIM-signed
items (~2 KB, RSA-2048, ``--signatures`` signatures each) one ``Vault.put`` at a time,
alternating so that both see the same disk and load. "off" is the archive alone; "on" is the
archive and then the whole check of that item in the same thread (``ReceiptChecker.check_now``:
parse, body and header hashes, RSA verification, one key lookup served from memory, the
results and key snapshot committed), which is the work the daemon's checker thread does per
item. The key records come from a ``StaticResolver``: no DNS. Also printed: what the pipeline
itself waits for with the check on (the archive plus ``submit``, which only queues the item),
and the check alone. Per-item p50/p99 and items/s. Then the worker as a first scan uses it:
``--items`` archived items submitted at once (faster than it checks), the time until all are
recorded (``drain``), how many were recorded and how many ``submit`` refused (``--burst-only``:
only that; the script runs on an older tree too, whose checker has no ``load``).

    python bench/dkim_receipt.py [--items N] [--signatures K] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.dkimcheck import check
from guardmail.vault.keyfetch import StaticResolver
from guardmail.vault.receipts import ReceiptChecker
from guardmail.vault.store import Vault

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class QueueOnly(ReceiptChecker):
    """``submit`` as the pipeline calls it, with a worker that checks nothing (the real checks
    are timed separately, in this thread)."""

    def _run(self) -> None:
        return None


def keypair() -> tuple[bytes, bytes]:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def item(n: int, tag: str, pem: bytes, signatures: int) -> bytes:
    raw = (
        (
            f"From: offender{n % 7}@stalk.example\r\nTo: jane@home.example\r\n"
            f"Subject: message {n} {tag}\r\nMessage-ID: <{n}.{tag}@stalk.example>\r\n"
            f"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n\r\n"
        ).encode()
        + b"x" * 76 * 26
        + b"\r\n"
    )
    for k in range(signatures):
        raw = bytes(dkim.sign(raw, f"s{k}".encode(), b"stalk.example", pem)) + raw
    return raw


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def line(name: str, t: list[float]) -> str:
    return (
        f"  {name:34s} p50 {pct(t, 0.5) * 1e3:6.2f} ms  p99 {pct(t, 0.99) * 1e3:6.2f} ms  "
        f"mean {statistics.fmean(t) * 1e3:6.2f} ms  {len(t) / sum(t):7.0f} items/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--signatures", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--burst-only", action="store_true", help="only the worker under a burst (the last line)"
    )
    args = parser.parse_args()
    n = 200 if args.quick else args.items
    pem, record = keypair()
    dns = StaticResolver(
        {f"s{k}._domainkey.stalk.example": record for k in range(args.signatures)}, name="memory"
    )
    with tempfile.TemporaryDirectory(prefix="gm-bench-dkim-") as tmp:
        root = Path(tmp)
        stores = {name: SQLiteStorage(root / name / "guardmail.sqlite3") for name in ("a", "b")}
        off = Vault(root / "a" / "vault" / "jane", stores["a"], "jane")
        on = Vault(root / "b" / "vault" / "jane", stores["b"], "jane")
        checker = ReceiptChecker(storage=stores["b"], tenant="jane", resolver=dns)
        queued = QueueOnly(storage=stores["b"], tenant="jane", resolver=dns)
        times: dict[str, list[float]] = {"off": [], "on": [], "on, pipeline waits": []}
        alone: list[float] = []
        results: dict[str, int] = {}
        items = [
            (item(i, "a", pem, args.signatures), item(i, "b", pem, args.signatures))
            for i in range(n)
        ]
        if args.burst_only:
            burst(root, items, dns)
            for s in stores.values():
                s.close()
            return
        for i, (raw_a, raw_b) in enumerate(items):
            start = time.perf_counter()
            off.put(raw_a, source_ref=f"new/{i}", metadata={"offender": "X"}, now=NOW)
            times["off"].append(time.perf_counter() - start)
            start = time.perf_counter()
            r = on.put(raw_b, source_ref=f"new/{i}", metadata={"offender": "X"}, now=NOW)
            archived = time.perf_counter()
            queued.submit(seq=r.seq, sha256=r.sha256, raw=raw_b)  # queued, never checked
            waited = time.perf_counter()
            checker.check_now(seq=r.seq, sha256=r.sha256, raw=raw_b)
            done = time.perf_counter()
            times["on"].append((archived - start) + (done - waited))
            times["on, pipeline waits"].append(waited - start)
            t0 = time.perf_counter()
            found = check(raw_b, dns)
            alone.append(time.perf_counter() - t0)
            for sig in found.signatures:
                results[sig.result] = results.get(sig.result, 0) + 1
        print(
            f"{n} DKIM-signed items ({len(items[0][1])} bytes, {args.signatures} RSA-2048 "
            "signature(s) each), one commit each, alternating, same disk, DNS excluded:"
        )
        for name, t in times.items():
            print(line(f"archive, DKIM {name}", t))
        print(line("the check alone (no commit)", alone))
        print(
            f"  ratio on/off: p50 {pct(times['on'], 0.5) / pct(times['off'], 0.5):.2f}x  "
            f"p99 {pct(times['on'], 0.99) / pct(times['off'], 0.99):.2f}x; "
            f"signature results {results}"
        )
        burst(root, items, dns)
        for s in stores.values():
            s.close()


def burst(root: Path, items: list[tuple[bytes, bytes]], dns: StaticResolver) -> None:
    """Every item submitted at once to a fresh checker (as a first scan's chunks of hundreds
    are), then drained: seconds, checks recorded, checks refused."""
    storage = SQLiteStorage(root / "burst" / "guardmail.sqlite3")
    vault = Vault(root / "burst" / "vault" / "jane", storage, "jane")
    archived = [
        vault.put(raw, source_ref=f"new/{i}", metadata={"offender": "X"}, now=NOW)
        for i, (_, raw) in enumerate(items)
    ]
    try:
        checker = ReceiptChecker(storage=storage, tenant="jane", resolver=dns, load=vault.blobs.get)
    except TypeError:  # a checker from before the read-back (this script run on an older tree)
        checker = ReceiptChecker(storage=storage, tenant="jane", resolver=dns)
    start = time.perf_counter()
    refused = sum(
        not checker.submit(seq=r.seq, sha256=r.sha256, raw=raw)
        for r, (_, raw) in zip(archived, items, strict=True)
    )
    checker.drain(600)
    took = time.perf_counter() - start
    checker.close()
    with storage.read() as tx:
        recorded = sum(tx.receipt_check("jane", r.seq) is not None for r in archived)
    storage.close()
    print(
        f"worker, {len(items)} submitted at once: all recorded after {took:.2f} s"
        f" ({len(items) / took:.0f} items/s); {recorded} recorded, {refused} refused"
    )


if __name__ == "__main__":
    main()
