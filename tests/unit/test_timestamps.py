"""Trusted timestamps of signed tree heads, against a local RFC 3161 TSA (``openssl ts``)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from guardmail import logs
from guardmail.config.evidence import TimestampConfig
from guardmail.daemon.timestamper import Timestamper
from guardmail.errors import TimestampFailed
from guardmail.storage.base import StorageClosed
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import timestamps
from guardmail.vault.signing import signed_bytes
from guardmail.vault.store import Vault
from tests.servers.tsa import TSA, make_certificates, start_tsa

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TSA]:
    server = start_tsa(tmp_path_factory.mktemp("tsa"))
    yield server
    server.close()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "state" / "guardmail.sqlite3")
    yield Vault(tmp_path / "state" / "vault" / "jane", storage, "jane")
    storage.close()


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        seen.append((name, fields))

    logs.add_listener(listen)
    yield seen
    logs.remove_listener(listen)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _stamper(vault: Vault, tsa: TSA, clock: Clock, every: int = 15) -> Timestamper:
    cfg = TimestampConfig(tsa_url=tsa.url, ca_file=tsa.ca_file, every_minutes=every)
    return Timestamper(vault, cfg, clock=clock, rand=lambda: 0.0)


def _archive(vault: Vault, n: int) -> None:
    vault.put(
        f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), source_ref=f"INBOX/{n}", metadata={}, now=NOW
    )


def _openssl_verify(data: Path, token: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(data), "-in", str(token), "-CAfile", str(ca)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_new_head_is_stamped_and_the_token_verifies_with_openssl_and_guardmail(
    vault: Vault, tsa: TSA, tmp_path: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    _archive(vault, 1)
    _archive(vault, 2)
    _stamper(vault, tsa, Clock()).step()
    [stamp] = vault.timestamps()
    head = vault.last_tree_head()
    assert head is not None and stamp.tree_size == head.tree_size == 2
    data, token = tmp_path / "head.json", tmp_path / "head.tsr"
    data.write_bytes(signed_bytes(head))
    token.write_bytes(stamp.token)
    ca = tmp_path / "ca.pem"
    ca.write_text(stamp.ca_pem)  # the root kept beside the token is enough
    run = _openssl_verify(data, token, ca)
    assert run.returncode == 0 and "Verification: OK" in run.stdout, run.stderr
    roots = timestamps.load_roots(tsa.ca_file)
    when = timestamps.check(stamp.token, signed_bytes(head), roots)
    assert when.isoformat() == stamp.gen_time
    assert [n for n, _ in events if n.startswith("timestamp.")] == ["timestamp.stamped"]


def test_a_token_for_another_hash_fails_both_checks(vault: Vault, tsa: TSA, tmp_path: Path) -> None:
    _archive(vault, 1)
    _stamper(vault, tsa, Clock()).step()
    [stamp] = vault.timestamps()
    other = tmp_path / "other.json"
    other.write_bytes(b'{"format":"guardmail-tree-head/1","tree_size":1}')
    token = tmp_path / "t.tsr"
    token.write_bytes(stamp.token)
    run = _openssl_verify(other, token, tsa.ca_file)
    assert run.returncode != 0 and "Verification: OK" not in run.stdout
    with pytest.raises(TimestampFailed, match="Mismatch between messages"):
        timestamps.check(stamp.token, other.read_bytes(), timestamps.load_roots(tsa.ca_file))


def test_a_token_from_an_untrusted_tsa_fails(vault: Vault, tsa: TSA, tmp_path: Path) -> None:
    _archive(vault, 1)
    stamper = _stamper(vault, tsa, Clock())
    # The local TSA is a subprocess a request; on a loaded machine a first request has failed
    # once (CI): a retry is what the daemon does too, and this test is about the token.
    for _ in range(3):
        stamper.step()
        if vault.timestamps():
            break
    [stamp] = vault.timestamps()
    head = vault.last_tree_head()
    assert head is not None
    (tmp_path / "elsewhere").mkdir()
    make_certificates(tmp_path / "elsewhere")
    stranger = timestamps.load_roots(tmp_path / "elsewhere" / "ca.pem")
    with pytest.raises(TimestampFailed, match="does not verify"):
        timestamps.check(stamp.token, signed_bytes(head), stranger)


def test_a_tsa_certificate_not_valid_at_the_tokens_time_is_refused(
    vault: Vault, tmp_path: Path
) -> None:
    directory = tmp_path / "future-tsa"
    directory.mkdir()
    make_certificates(directory, not_before=datetime.now(UTC) + timedelta(days=2))
    future = TSA(directory)
    try:
        _archive(vault, 1)
        stamper = _stamper(vault, future, Clock())
        stamper.step()
        assert vault.timestamps() == [] and stamper.failures == 1
    finally:
        future.close()


def test_tsa_down_is_retried_with_backoff_and_archiving_goes_on(
    vault: Vault, tsa: TSA, events: list[tuple[str, dict[str, Any]]]
) -> None:
    clock = Clock()
    stamper = _stamper(vault, tsa, clock)
    tsa.down = True
    try:
        _archive(vault, 1)
        delays = [stamper.step() for _ in range(3)]
        _archive(vault, 2)  # archiving is not held up by the TSA
    finally:
        tsa.down = False
    assert delays == [0.5, 1.0, 2.0]  # core.backoff.NETWORK with rand 0
    failed = [f for n, f in events if n == "timestamp.failed"]
    assert len(failed) == 3 and "HTTP 503" in failed[0]["error"]
    assert vault.timestamps() == []
    assert stamper.step() == 15 * 60
    assert [s.tree_size for s in vault.timestamps()] == [2] and stamper.failures == 0


def test_at_most_one_timestamp_every_n_minutes(vault: Vault, tsa: TSA) -> None:
    clock = Clock()
    stamper = _stamper(vault, tsa, clock, every=10)
    _archive(vault, 1)
    stamper.step()
    asked = tsa.requests
    # The slot counts from the TSA's time, which runs on the real clock a little after Clock's.
    clock.now = datetime.fromisoformat(vault.timestamps()[0].gen_time)
    _archive(vault, 2)
    wait = stamper.step()
    assert tsa.requests == asked and wait == 600
    assert stamper.step() <= wait  # nothing new to stamp before the slot: still waiting
    clock.now += timedelta(minutes=11)
    stamper.step()
    assert tsa.requests == asked + 1
    assert [s.tree_size for s in vault.timestamps()] == [1, 2]


def test_a_tsa_whose_clock_runs_far_ahead_does_not_stop_the_timestamps(
    vault: Vault, tsa: TSA, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    clock.now -= timedelta(days=365)  # ours a year behind the TSA's (the test TSA's is real)
    stamper = _stamper(vault, tsa, clock, every=10)
    _archive(vault, 1)
    assert stamper.step() == 600
    _archive(vault, 2)
    asked = tsa.requests
    with caplog.at_level("WARNING", logger="guardmail"):
        assert stamper.step() == 600  # counting from the TSA's time, it waited a year
    assert tsa.requests == asked + 1 and [s.tree_size for s in vault.timestamps()] == [1, 2]
    assert "timestamp.tsa_clock_ahead" in caplog.text


def test_nothing_new_asks_nothing(vault: Vault, tsa: TSA) -> None:
    stamper = _stamper(vault, tsa, Clock())
    asked = tsa.requests
    assert stamper.step() == 2.0  # an empty vault: no head yet
    _archive(vault, 1)
    stamper.step()
    assert stamper.step() == 2.0 and tsa.requests == asked + 1


def test_status_shows_a_failing_tsa_then_its_recovery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guardmail.commands.status import _print as print_status
    from guardmail.daemon.observe import Board

    board = Board(vault_root=tmp_path, tenant="jane")
    fail = {
        "tenant": "jane",
        "error": "the TSA http://tsa/ answered HTTP 503",
        "failures": 2,
        "retry_in": 1.5,
    }
    board("timestamp.failed", logging.ERROR, fail)
    vault = {
        "tenant": "jane",
        "entries": 3,
        "intact": True,
        "problems": [],
        "blobs_checked": False,
        "last_timestamp": None,
    }
    print_status({"running": False, **board.snapshot(), "vault": vault})
    out = capsys.readouterr().out
    assert "timestamps: FAILING since" in out and "(2 tries, next in 1.5 s)" in out
    assert "HTTP 503" in out and board.snapshot()["counts"]["errors"] == 1
    board(
        "timestamp.stamped",
        logging.INFO,
        {"tenant": "jane", "tree_size": 3, "gen_time": "2026-11-25T12:00:00+00:00"},
    )
    stamped = {**vault, "last_timestamp": {"tree_size": 3, "gen_time": "2026-11-25T12:00:00+00:00"}}
    print_status({"running": False, **board.snapshot(), "vault": stamped})
    out = capsys.readouterr().out
    assert "timestamps: ok since" in out
    assert "last trusted timestamp: 2026-11-25T12:00:00+00:00 over entries 1-3" in out


def test_each_new_timestamp_is_published_by_the_hook_and_a_failing_hook_is_logged(
    vault: Vault, tsa: TSA, tmp_path: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    import base64
    import json
    import sys

    out = tmp_path / "published.json"
    copy = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    cfg = TimestampConfig(
        tsa_url=tsa.url, ca_file=tsa.ca_file, publish_command=[sys.executable, "-c", copy]
    )
    _archive(vault, 1)
    Timestamper(vault, cfg).step()
    doc = json.loads(out.read_text())
    [stamp] = vault.timestamps()
    head = vault.last_tree_head()
    assert head is not None
    assert doc["tree_head"].encode() == signed_bytes(head)
    assert base64.b64decode(doc["timestamp"]["token"]) == stamp.token
    assert doc["signature"] == head.signature and len(doc["key_fingerprint"]) == 64
    failing = cfg.model_copy(
        update={"publish_command": [sys.executable, "-c", "import sys; sys.exit('no mail')"]}
    )
    _archive(vault, 2)
    clock = Clock()
    clock.now += timedelta(hours=2)
    Timestamper(vault, failing, clock=clock).step()
    assert len(vault.timestamps()) == 2  # stamped all the same
    [failed] = [f for n, f in events if n == "timestamp.publish_failed"]
    assert failed["error"] == "exit 1: no mail"


def test_every_tenants_vault_is_stamped_on_its_own_schedule(tmp_path: Path, tsa: TSA) -> None:
    from guardmail.daemon.timestamper import Timestampers

    storage = SQLiteStorage(tmp_path / "multi" / "guardmail.sqlite3")
    try:
        main, bob = (Vault(tmp_path / "multi" / n, storage, n) for n in ("main", "bob"))
        _archive(main, 1)
        _archive(bob, 1)
        vaults = [main]
        clock = [1000.0]
        cfg = TimestampConfig(tsa_url=tsa.url, ca_file=tsa.ca_file, every_minutes=30)
        stampers = Timestampers(lambda: list(vaults), cfg, monotonic=lambda: clock[0])
        assert stampers.round() == 30 * 60
        assert len(main.timestamps()) == 1 and bob.timestamps() == []
        vaults.append(bob)  # a tenant of tenants.d added on reload
        clock[0] += 10
        assert stampers.round() == 30 * 60 - 10  # main's next slot comes first
        assert len(bob.timestamps()) == 1 and len(main.timestamps()) == 1
        vaults.remove(main)
        clock[0] += 5
        assert stampers.round() == 30 * 60 - 5  # only bob's schedule is left
    finally:
        storage.close()


def test_storage_closed_during_a_round_ends_it_with_one_clear_line(
    tmp_path: Path, tsa: TSA, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """At shutdown the storage is closed while a round still runs in its worker thread (the
    TSA asked, its token not yet kept): the round ends quietly, not with sqlite3's raw error."""
    storage = SQLiteStorage(tmp_path / "state" / "guardmail.sqlite3")
    vault = Vault(tmp_path / "state" / "vault" / "jane", storage, "jane")
    _archive(vault, 1)

    def ask_then_stop(url: str, message: bytes, *, timeout: float) -> tuple[bytes, int]:
        reply = timestamps.request(url, message, timeout=timeout)
        storage.close()  # what the daemon's shutdown does meanwhile
        return reply

    cfg = TimestampConfig(tsa_url=tsa.url, ca_file=tsa.ca_file, every_minutes=15)
    stamper = Timestamper(vault, cfg, ask=ask_then_stop, rand=lambda: 0.0)
    assert stamper.step() > 0
    assert stamper.step() > 0  # the next round cannot even read: still quiet
    names = [n for n, _ in events if n.startswith("timestamp.")]
    assert names == ["timestamp.stopped"] and stamper.failures == 0
    [(_, fields)] = [e for e in events if e[0] == "timestamp.stopped"]
    assert "is closed" in fields["reason"] and fields["tenant"] == "jane"
    with pytest.raises(StorageClosed):
        storage.close()
        vault.last_tree_head()
