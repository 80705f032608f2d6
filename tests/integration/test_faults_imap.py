"""A real Dovecot misbehaving through a faulting proxy (tests/servers/faultproxy.py), watched by the
real daemon (issue 23, "Resources and faults"): the connection dropped, reset or hung in the
middle of the FETCH of an offender's message (a truncated literal), and a TLS handshake that
stalls. Each time the watcher reconnects by itself with backoff; the offender's message is
archived exactly once with the server's bytes (never a truncated copy) and moved once; clean
mail is left untouched."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon
from tests.integration.test_imap_dovecot import Mailbox, evidence, journal_entries
from tests.servers.dovecot import Dovecot, start_dovecot
from tests.servers.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.integration

# Long enough that Dovecot sends the literal in more than one read on the proxy's side.
OFFENDER = (
    b"From: Stalker <stalker@example.net>\r\nSubject: you\r\n\r\n"
    + b"I see you. " * 2000
    + b"\r\nLAST-LINE\r\n"
)
CLEAN = b"From: friend@innocent.example\r\nSubject: lunch\r\n\r\nsee you\r\n"


def config_text(tmp: Path, port: int, *, tls: str, ca: Path | None = None) -> str:
    (tmp / "password").write_text("secret\n", encoding="utf-8")
    ca_line = f"      ca_file: {ca}\n" if ca else ""
    return f"""\
state_dir: {tmp}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {port}
      tls: {tls}
{ca_line}      username: alice
      password_file: {tmp}/password
      timeout_seconds: 2
      sent_folders: []  # one connection: the faults are counted on INBOX's
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def retries(daemon: Daemon, name: str) -> list[float]:
    """The ``retry_in`` of each ``name`` event the daemon logged, in order."""
    return [
        float(m.group(1))
        for line in daemon.log_text().splitlines()
        if f"event={name} " in line
        for m in [re.search(r"retry_in=([0-9.]+)", line)]
        if m
    ]


# (what the server does, the fault): each strikes inside the FETCH of the whole offender message.
MID_FETCH = {
    "closed_before_the_literal": Fault(action="close", pattern=b"BODY[] {", keep=3),
    "closed_mid_literal": Fault(action="close", pattern=b"I see you. ", keep=5000),
    "reset_mid_literal": Fault(action="reset", pattern=b"I see you. ", keep=5000),
    "hung_mid_literal": Fault(action="stall", pattern=b"I see you. ", keep=5000),
}


@pytest.mark.parametrize("case", MID_FETCH)
def test_a_fetch_cut_short_is_retried_after_a_reconnect_and_archived_once_whole(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon], case: str
) -> None:
    config = tmp_path / "guardmail.yaml"
    with FaultProxy(dovecot.imap_port) as proxy:
        config.write_text(config_text(tmp_path, proxy.port, tls="none"))
        box = Mailbox(dovecot)
        box.append(CLEAN)
        daemon = Daemon(config, tmp_path / "daemon.log")
        daemons.append(daemon)
        wait_for(lambda: "imap.caught_up" in daemon.log_text(), what="clean mail judged")
        proxy.arm(MID_FETCH[case])
        box.append(OFFENDER)
        proxy.wait_struck(1)
        wait_for(lambda: "imap.disconnected" in daemon.log_text(), what="the cut noticed")
        wait_for(lambda: box.count("Quarantine") == 1, what="moved after the reconnect")
        wait_for(lambda: "item.quarantined" in daemon.log_text(), what="journaled")
        assert daemon.stop() == 0
    text = daemon.log_text()
    assert text.count("imap.connected") == 2 and "Traceback" not in text
    assert box.messages("Quarantine") == [(b"", OFFENDER)]
    assert box.messages("INBOX") == [(b"", CLEAN)]  # never \Seen, never moved
    (item,) = evidence(config)
    assert item["sha256"] == hashlib.sha256(OFFENDER).hexdigest()  # the whole message, once
    blobs = list((tmp_path / "var" / "vault" / "default" / "blobs").rglob("*"))
    assert [b.read_bytes() for b in blobs if b.is_file()] == [OFFENDER]  # no partial blob
    assert journal_entries(config) == 2  # archived once, moved once


def test_a_server_that_keeps_dropping_the_same_fetch_is_retried_with_growing_delays(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Each connection logs in fine and dies at the same message: the delays must still grow
    (a watcher that reset its backoff at every login would reconnect every second forever)."""
    config = tmp_path / "guardmail.yaml"
    box = Mailbox(dovecot)
    with FaultProxy(dovecot.imap_port) as proxy:
        config.write_text(config_text(tmp_path, proxy.port, tls="none"))
        proxy.arm(Fault(action="close", pattern=b"I see you. ", keep=100, times=3))
        box.append(OFFENDER)
        daemon = Daemon(config, tmp_path / "daemon.log")
        daemons.append(daemon)
        proxy.wait_struck(3)
        wait_for(lambda: box.count("Quarantine") == 1, what="moved once the server behaves")
        assert daemon.stop() == 0
    delays = retries(daemon, "imap.disconnected")
    assert len(delays) == 3
    # NETWORK backoff: attempt n waits 2**n s scaled by a jitter factor in [0.5, 1).
    assert delays[0] <= 1.0 and delays[2] >= 2.0, delays
    assert len(evidence(config)) == 1 and journal_entries(config) == 2


def test_a_stalled_tls_handshake_times_out_clearly_and_recovers(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    box = Mailbox(dovecot)
    with FaultProxy(dovecot.imaps_port) as proxy:
        config.write_text(config_text(tmp_path, proxy.port, tls="implicit", ca=dovecot.ca_file))
        proxy.arm(Fault(action="stall", direction="up", after=0, times=2))  # the ClientHello
        daemon = Daemon(config, tmp_path / "daemon.log")
        daemons.append(daemon)
        wait_for(lambda: "imap.connected" in daemon.log_text(), what="connected at the third try")
        failed = [ln for ln in daemon.log_text().splitlines() if "imap.connect_failed" in ln]
        assert len(failed) == 2 and proxy.struck == 2
        for line in failed:
            assert f"TLS handshake with 127.0.0.1:{proxy.port}: no answer within 2s" in line, line
        box.append(OFFENDER)
        wait_for(lambda: box.count("Quarantine") == 1, what="watching after the stall")
        assert daemon.stop() == 0
    assert len(evidence(config)) == 1
