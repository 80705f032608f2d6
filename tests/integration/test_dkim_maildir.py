"""The real daemon on a real Maildir checks a blocked message's DKIM signature after archiving
it, through a DNS server on loopback, keeps the key record, and ``guardmail evidence
verify-dkim`` checks it again offline after the key is gone from DNS (the bundle's offline
check is in tests/unit/test_dkim_receipt.py)."""

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_maildir_daemon import deliver
from tests.servers.dns_txt import TxtServer

pytestmark = pytest.mark.integration

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
    action: quarantine
evidence:
  authserv_id: mx.example.org
  nameservers: ["{dns}"]
  dns_timeout: 1
sources:
  maildir:
    - path: {root}/var/Maildir
      rescan_seconds: 0.3
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rig:
    """A Maildir watched by the daemon's config, and a DNS server on loopback holding the public
    key of example.net's selector s1 (its private key in ``pem``)."""

    maildir: Path
    config: Path
    dns: TxtServer
    pem: bytes

    def sign(self, message: bytes) -> bytes:
        """``message`` with example.net's DKIM-Signature (selector s1) prepended."""
        return bytes(dkim.sign(message, b"s1", b"example.net", self.pem)) + message


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    with TxtServer({"s1._domainkey.example.net": record}) as dns:
        config = tmp_path / "guardmail.yaml"
        config.write_text(CONFIG.format(root=tmp_path, dns=dns.address))
        yield Rig(maildir=maildir, config=config, dns=dns, pem=pem)


def test_daemon_records_dkim_at_receipt_and_verifies_it_offline_after_rotation(
    tmp_path: Path, rig: Rig
) -> None:
    message = (
        b"From: Stalker <stalker@example.net>\r\nTo: jane@example.org\r\nSubject: hi\r\n\r\n"
        b"I am watching.\r\n"
    )
    raw = (
        b"Authentication-Results: mx.example.org; dkim=pass header.d=example.net\r\n"
        b"Authentication-Results: forged.example; dkim=pass\r\n" + rig.sign(message)
    )
    maildir, config, dns = rig.maildir, rig.config, rig.dns
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        deliver(maildir, "1.signed.host", raw)
        wait_for(lambda: "receipt.checked" in daemon.log_text(), what="the DKIM check")
        assert (maildir / ".Quarantine" / "new" / "1.signed.host").read_bytes() == raw
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert dns.asked == ["s1._domainkey.example.net"]
    dns.records.clear()  # the provider rotated its key
    dns.close()  # and the checks below are offline
    (entry,) = [
        json.loads(line)
        for line in guardmail(config, "evidence", "list", "--json").stdout.splitlines()
    ]
    seq = str(entry["seq"])
    out = guardmail(config, "evidence", "verify-dkim", seq)
    text = out.stdout.decode()
    assert out.returncode == 0, text + out.stderr.decode()
    assert "dkim d=example.net s=s1 rsa-sha256: at receipt pass; from the snapshot pass" in text
    assert f"from dnspython {dns.address}" in text
    assert "Authentication-Results of mx.example.org: mx.example.org; dkim=pass" in text
    assert "forged.example" not in text


def test_a_check_lost_by_a_kill_after_archiving_is_done_at_the_restart_and_says_so(
    tmp_path: Path, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon is killed once the item is archived, before its check is queued: the next
    start finds the archived entry without a check, checks it (read back from the vault) and
    records that it was checked late."""
    message = b"From: Stalker <stalker@example.net>\r\nSubject: again\r\n\r\nStill here.\r\n"
    raw = rig.sign(message)
    maildir, config, dns = rig.maildir, rig.config, rig.dns
    monkeypatch.setenv("GUARDMAIL_FAULT", "pipeline.archived:1")
    killed = Daemon(config, tmp_path / "killed.log")
    monkeypatch.delenv("GUARDMAIL_FAULT")
    deliver(maildir, "1.signed.host", raw)
    wait_for(lambda: killed.proc.poll() is not None, timeout=30, what="the crash point")
    assert "receipt.checked" not in killed.log_text()
    assert dns.asked == []
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "receipt.checked" in daemon.log_text(), what="the late check")
        assert "receipt.catching_up" in daemon.log_text()
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert dns.asked == ["s1._domainkey.example.net"]
    dns.close()
    (entry,) = [
        json.loads(line)
        for line in guardmail(config, "evidence", "list", "--json").stdout.splitlines()
    ]
    out = guardmail(config, "evidence", "verify-dkim", str(entry["seq"]))
    text = out.stdout.decode()
    assert out.returncode == 0, text + out.stderr.decode()
    assert "checked late, after a restart" in text  # not taken for a check at receipt
    assert "dkim d=example.net s=s1 rsa-sha256: when checked pass; from the snapshot pass" in text
    assert "at receipt pass" not in text
