"""The running daemon has new tree heads timestamped by a local RFC 3161 TSA (``openssl ts``):
a TSA that is down is retried and shown in the metrics, and never holds up archiving; how
``guardmail status`` shows a failing TSA: tests/unit/test_timestamps.py. (The tokens
in a bundle, and openssl's check of them: tests/unit/test_export_timestamps.py.)"""

import os
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.ports import free_ports
from tests.servers.tsa import start_tsa

pytestmark = pytest.mark.integration


def test_tsa_down_then_up_archives_at_once_and_stamps_when_it_can(tmp_path: Path) -> None:
    tsa = start_tsa(tmp_path / "tsa")
    tsa.down = True
    (port,) = free_ports(1)
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp_path}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  maildir:
    - path: {tmp_path}/var/Maildir
      create: true
      name: home
      rescan_seconds: 0.3
metrics:
  listen: 127.0.0.1:{port}
evidence:
  timestamp:
    tsa_url: {tsa.url}
    ca_file: {tsa.ca_file}
    every_minutes: 1
"""
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    maildir = tmp_path / "var" / "Maildir"
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")
        (maildir / "tmp" / "m1").write_bytes(b"From: stalker@example.net\r\n\r\nx\r\n")
        os.rename(maildir / "tmp" / "m1", maildir / "new" / "m1")
        # Archived and moved while the TSA is down.
        wait_for(lambda: "item.quarantined" in daemon.log_text(), what="quarantine")
        wait_for(lambda: "timestamp.failed" in daemon.log_text(), what="a failed timestamp")

        def metric(outcome: str) -> float:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
            key = f'guardmail_timestamps_total{{outcome="{outcome}",tenant="default"}} '
            return next((float(x[len(key) :]) for x in text.splitlines() if x.startswith(key)), 0)

        assert metric("failed") >= 1 and metric("stamped") == 0
        tsa.down = False
        wait_for(lambda: "timestamp.stamped" in daemon.log_text(), what="a timestamp")
        assert metric("stamped") == 1
        # Stored before it is logged: status reads it from the vault.
        assert "last trusted timestamp: " in guardmail(config, "status").stdout.decode()
    finally:
        assert daemon.stop() == 0
        tsa.close()
    assert "Traceback" not in daemon.log_text()
