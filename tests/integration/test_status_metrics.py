"""`guardmail status` and the Prometheus endpoint tell what the running daemon is doing."""

import json
import os
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.ports import free_ports

pytestmark = pytest.mark.integration


def test_status_and_metrics_report_sources_counts_and_vault(tmp_path: Path) -> None:
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
"""
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    maildir = tmp_path / "var" / "Maildir"
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")
        for name, raw in [
            ("m1", b"From: stalker@example.net\r\n\r\nx\r\n"),
            ("m2", b"From: friend@example.org\r\n\r\ny\r\n"),
        ]:
            (maildir / "tmp" / name).write_bytes(raw)
            os.rename(maildir / "tmp" / name, maildir / "new" / name)
        wait_for(lambda: "item.quarantined" in daemon.log_text(), what="quarantine")

        def status() -> dict[str, object]:
            done = guardmail(config, "status", "--json")
            data: dict[str, object] = json.loads(done.stdout)
            data["exit"] = done.returncode
            return data

        wait_for(lambda: status().get("counts") == {"archived": 1, "judged": 2}, what="counts")
        now = status()
        assert now["running"] is True and now["exit"] == 0
        sources = now["sources"]
        assert isinstance(sources, dict) and set(sources) == {"home"}
        assert sources["home"]["state"] == "up" and sources["home"]["last_item"]
        assert now["vault"] == {
            "tenant": "default",
            "entries": 2,
            "intact": True,
            "problems": [],
            "blobs_checked": False,
            "last_timestamp": None,  # no TSA configured
        }

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert (
            'guardmail_items_judged_total{action="quarantine",channel="mail",tenant="default"} 1.0'
            in metrics
        )
        assert (
            'guardmail_items_judged_total{action="pass",channel="mail",tenant="default"} 1.0'
            in metrics
        )
        assert 'guardmail_source_up{source="home"} 1.0' in metrics
        lines = metrics.splitlines()
        vault_line = next(x for x in lines if x.startswith("guardmail_vault_bytes{"))
        assert float(vault_line.split()[-1]) > 0
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    stopped = guardmail(config, "status")
    assert stopped.returncode == 1 and b"daemon: NOT running" in stopped.stdout
