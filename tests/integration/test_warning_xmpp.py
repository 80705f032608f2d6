"""The one warning over XMPP, through a real Prosody, sent by the real ``guardmail`` command and
daemon: delivered once with the exact bytes kept, never twice (not by two racing processes), sent
before the server block on the first blocked message, a server block lifted for a manual send and
restored, and a refusal by the server recorded as a certain failure."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from tests.conftest import wait_for
from tests.integration.guardmail_proc import guardmail
from tests.integration.test_xmpp_prosody import (
    VICTIM,
    Daemon,
    Tap,
    archived,
    blocklist,
    config_text,
    daemons,
    peer,
    peers,
    prosody,
    start,
)
from tests.servers.prosody import DOMAIN, Peer, Prosody

__all__ = ["daemons", "peers", "prosody"]  # fixtures, shared with the watcher's tests

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
STALKER = f"stalker@{DOMAIN}"


def write_config(
    tmp: Path,
    server: Prosody,
    *,
    send: str = "manual",
    port: int | None = None,
    tls: str = "starttls",
    action: str = "quarantine",
    server_block: bool = False,
) -> Path:
    shutil.copy(REPO / "config" / "warning.txt.j2", tmp / "warning.txt.j2")
    config = tmp / "guardmail.yaml"
    block = "      server_block: true\n" if server_block else ""
    config.write_text(
        config_text(tmp, server, port=port, tls=tls, action=action, mam_sync=1)
        + block
        + f"""\
warning:
  send: {send}
  channel: xmpp
  victim: Jane Victim
  template_file: {tmp}/warning.txt.j2
  law: "the Protection from Harassment Act 1997"
"""
    )
    return config


def status(config: Path) -> str:
    done = guardmail(config, "warn", "--status")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def ledger_detail(tmp: Path) -> str:
    storage = SQLiteStorage(tmp / "var" / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            (row,) = tx.warnings("default")  # the one offender's, keyed by its id
    finally:
        storage.close()
    return row.detail


def bodies(p: Peer, quiet: float = 1.0) -> list[bytes]:
    return [s for s in p.drain(quiet=quiet) if s.startswith(b"<message") and b"<body" in s]


def test_sent_once_with_its_exact_bytes_kept_and_a_second_refused(
    prosody: Prosody, tmp_path: Path, peers: list[Peer]
) -> None:
    tap = Tap(prosody.port, to_server=True)
    try:
        config = write_config(tmp_path, prosody, port=tap.port, tls="none")
        stalker = peer(prosody, peers, "stalker")
        dry = guardmail(config, "warn", "Stalker", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith(b'<message xmlns="jabber:client" to="stalker@localhost"')
        assert b"Jane Victim" in dry.stdout and b"would send to stalker@localhost" in dry.stderr
        assert bodies(stalker, quiet=0.5) == []
        sent = guardmail(config, "warn", "Stalker", "--yes")
        assert sent.returncode == 0, sent.stderr
        got = stalker.expect(b"<body>")
        assert f"from='{VICTIM}/guardmail-warning-".encode() in got.replace(b'"', b"'")
        assert b"Protection from Harassment Act 1997" in got
        assert "Stalker: sent at" in status(config) and "stanza id guardmail-warning-" in (
            status(config)
        )
        again = guardmail(config, "warn", "Stalker", "--yes")
        assert again.returncode == 1 and b"sent at" in again.stderr
        assert bodies(stalker) == []  # nothing more arrived
        wire = bytes(tap.received)
    finally:
        tap.close()
    verify = guardmail(config, "evidence", "verify")
    assert verify.returncode == 0, verify.stderr
    blobs = [p.read_bytes() for p in (tmp_path / "var" / "vault").rglob("*") if p.is_file()]
    kept = [b for b in blobs if b.startswith(b"<message")]
    assert len(kept) == 1 and kept[0] in wire  # the vault holds exactly the bytes written
    assert "accepted by localhost" in ledger_detail(tmp_path)


def test_two_racing_processes_send_one(prosody: Prosody, tmp_path: Path, peers: list[Peer]) -> None:
    config = write_config(tmp_path, prosody, tls="implicit", port=prosody.tls_port)
    stalker = peer(prosody, peers, "stalker")
    argv = [sys.executable, "-m", "guardmail", "-c", str(config), "warn", "Stalker", "--yes"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    codes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        p.stderr.close()
    assert codes == [0, 1]
    assert len(bodies(stalker, quiet=2.0)) == 1


def test_on_first_block_warns_before_the_server_block(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    config = write_config(
        tmp_path, prosody, send="on_first_block", action="block", server_block=True
    )
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    daemon = start(tmp_path, daemons)
    wait_for(lambda: "xmpp.blocklist_synced" in daemon.log_text(), what="blocklist synced")
    assert "withheld_until_warned=stalker" in daemon.log_text()
    assert blocklist(phone) == set()  # owed the warning: not blocked at the server yet
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='s1'><body>answer me</body></message>")
    warning = stalker.expect(b"<body>")
    assert b"Protection from Harassment Act 1997" in warning
    wait_for(lambda: daemon.count("xmpp.blocklist_synced") >= 2, what="blocked after warning")
    log = daemon.log_text()
    assert log.index("warning.sent") < log.rindex("xmpp.blocklist_synced")
    assert blocklist(phone) == {STALKER, "harass.example"}
    phone.drain(quiet=0.5)
    stalker.send(f"<message to='{VICTIM}' type='chat' id='s2'><body>hello?</body></message>")
    assert not any(b"id='s2'" in s for s in phone.drain(quiet=1.0))  # dropped by the server
    assert bodies(stalker) == []  # one warning, nothing else
    assert daemon.stop() == 0
    assert "Stalker: sent at" in status(config)
    assert [e["message_id"] for e in archived(tmp_path)] == ["s1"]
    case = tmp_path / "case"
    export = guardmail(config, "evidence", "export", "--offender", "Stalker", "--out", str(case))
    assert export.returncode == 0, export.stderr
    documented = (case / "warning-stalker.xml").read_bytes()  # the warning, as sent
    assert documented.startswith(b"<message") and b"Protection from Harassment" in documented
    assert guardmail(config, "evidence", "verify", str(case)).returncode == 0


def test_manual_warning_lifts_the_server_block_for_the_send_and_restores_it(
    prosody: Prosody, tmp_path: Path, peers: list[Peer], daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, prosody, action="block", server_block=True)
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    daemon = start(tmp_path, daemons)
    wait_for(lambda: "xmpp.blocklist_synced" in daemon.log_text(), what="blocklist synced")
    assert blocklist(phone) == {STALKER, "harass.example"}
    stalker = peer(prosody, peers, "stalker")
    sent = guardmail(config, "warn", "Stalker", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert b"Protection from Harassment Act 1997" in stalker.expect(b"<body>")
    assert blocklist(phone) == {STALKER, "harass.example"}
    assert f"{STALKER} lifted for it and restored" in ledger_detail(tmp_path)


def test_a_recipient_the_server_refuses_is_a_certain_failure(
    prosody: Prosody, tmp_path: Path
) -> None:
    config = write_config(tmp_path, prosody)
    text = config.read_text().replace(f"jids: [{STALKER}]", f"jids: [nobody@{DOMAIN}]")
    config.write_text(text)
    done = guardmail(config, "warn", "Stalker", "--yes")
    assert done.returncode == 1
    assert b"refused the message: service-unavailable" in done.stderr, done.stderr
    assert "Stalker: not sent: failed at" in status(config)


def test_a_refused_login_is_a_certain_failure_and_sends_nothing(
    prosody: Prosody, tmp_path: Path, peers: list[Peer]
) -> None:
    config = write_config(tmp_path, prosody)
    (tmp_path / "password").write_text("wrong\n")
    stalker = peer(prosody, peers, "stalker")
    done = guardmail(config, "warn", "Stalker", "--yes")
    assert done.returncode == 1
    assert b"login as 'victim@localhost' refused" in done.stderr, done.stderr
    assert "Stalker: not sent: failed at" in status(config)
    assert bodies(stalker) == []
