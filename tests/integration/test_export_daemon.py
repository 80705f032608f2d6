"""From delivery to the police: the real daemon archives, the real command exports and checks."""

import email
import email.policy
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  maildir:
    - path: {root}/var/Maildir
      rescan_seconds: 0.3
"""


def test_daemon_archive_exports_to_a_zip_that_standard_tools_verify(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    raws = [
        b"Return-Path: <stalker@example.net>\r\nDelivered-To: me@home.example\r\n"
        b"From: S <stalker@example.net>\r\nSubject: " + f"note {n}".encode() + b"\r\n\r\n"
        b"\x00\xff exact bytes\r\n"
        for n in range(3)
    ]
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        for n, raw in enumerate(raws):
            (maildir / "tmp" / f"{n}.host").write_bytes(raw)
            os.rename(maildir / "tmp" / f"{n}.host", maildir / "new" / f"{n}.host")
        quarantine = maildir / ".Quarantine" / "new"
        wait_for(lambda: len(list(quarantine.glob("*"))) == 3, what="three quarantined")
    finally:
        assert daemon.stop() == 0, daemon.log_text()

    bundle = tmp_path / "case.zip"
    export = guardmail(
        config, "evidence", "export", "--offender", "example offender", "--out", str(bundle)
    )
    assert export.returncode == 0, export.stderr
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path / "unzipped")
        items = sorted(n for n in z.namelist() if "/items/" in n)
        assert [z.read(n) for n in items] == raws
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "unzipped" / "case", check=False
    )
    assert check.returncode == 0
    verify = guardmail(config, "evidence", "verify", str(bundle))
    assert verify.returncode == 0, verify.stderr
    assert guardmail(config, "evidence", "verify").returncode == 0  # the vault, export journaled

    report = tmp_path / "abuse.eml"
    arf = guardmail(
        config, "evidence", "abuse-report", "--offender", "Example Offender", "--out", str(report)
    )
    assert arf.returncode == 0, arf.stderr
    assert b"abuse@example.net" in arf.stdout
    msg = email.message_from_bytes(report.read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert report.read_bytes().count(b"\x00\xff exact bytes") == 3

    # --send submits the same bytes through the warning's submission server and journals them.
    (tmp_path / "smtp-password").write_text("secret\n")
    with SmtpSink(tmp_path / "smtp-ca.pem") as sink:
        config.write_text(
            CONFIG.format(root=tmp_path)
            + f"""\
warning:
  from: "Me <me@home.example>"
  template_file: {tmp_path}/unused.txt
  smtp:
    host: 127.0.0.1
    port: {sink.port}
    ca_file: {sink.ca_file}
    username: victim
    password_file: {tmp_path}/smtp-password
"""
        )
        sent_report = tmp_path / "abuse-sent.eml"
        sent = guardmail(
            config,
            "evidence",
            "abuse-report",
            "--offender",
            "Example Offender",
            "--send",
            "--out",
            str(sent_report),
        )
        assert sent.returncode == 0, sent.stderr
        assert b"sent to abuse@example.net via 127.0.0.1: 250" in sent.stdout
        assert [r.rcpt_tos for r in sink.received] == [["abuse@example.net"]]
        assert sink.received[0].data == sent_report.read_bytes()
    assert guardmail(config, "evidence", "verify").returncode == 0
