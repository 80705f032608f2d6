"""Impersonation on a real Dovecot with the real daemon (issue 29): mail forged in the person's
own name, with a failing Authentication-Results of the server they trust, is quarantined and
flagged; a genuine message from their own address stays; a bounce of mail forged in their name
is kept out of view; ``explain`` says why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_imap_dovecot import Mailbox
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

AR = b"Authentication-Results: mx.example.org; "
FORGED = (
    AR
    + b"spf=fail smtp.mailfrom=sam@example.org; dkim=none; dmarc=fail header.from=example.org\r\n"
    b"From: Sam <sam@example.org>\r\nTo: Sam <sam@example.org>\r\nSubject: I know\r\n\r\nx\r\n"
)
GENUINE = (
    AR + b"spf=pass smtp.mailfrom=sam@example.org; dmarc=pass header.from=example.org\r\n"
    b"From: Sam <sam@example.org>\r\nTo: Sam <sam@example.org>\r\nSubject: note\r\n\r\ny\r\n"
)
# The sender wrote a passing result of the trusted server's id below the real one.
SMUGGLED = (
    AR
    + b"dmarc=fail header.from=example.org\r\n"
    + AR
    + b"dmarc=pass header.from=example.org\r\n"
    + b"From: sam@example.org\r\nSubject: trust me\r\n\r\nz\r\n"
)
BOUNCE = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.work.example>\r\nTo: sam@example.org\r\n"
    b"Subject: Undelivered Mail\r\nContent-Type: multipart/report; report-type=delivery-status;"
    b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n'
    b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Sam <sam@example.org>\r\n"
    b"To: boss@work.example\r\nSubject: I quit\r\n\r\n--b--\r\n"
)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


def test_forged_own_address_quarantined_genuine_kept(dovecot: Dovecot, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("secret\n", encoding="utf-8")
    config = tmp_path / "guardmail.yaml"
    config.write_text(f"""\
state_dir: {tmp_path}/var
impersonation:
  addresses: [sam@example.org]
  authserv_id: mx.example.org
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {dovecot.imaps_port}
      tls: implicit
      ca_file: {dovecot.ca_file}
      username: alice
      password_file: {tmp_path}/password
      poll_seconds: 0.5
""")
    box = Mailbox(dovecot)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "imap.connected" in daemon.log_text(), what="connected")
        for raw in (GENUINE, FORGED, SMUGGLED, BOUNCE):
            box.append(raw)
        wait_for(lambda: box.count("Quarantine") == 3, what="forgeries quarantined")
        assert sorted(raw for _, raw in box.messages("Quarantine")) == sorted(
            [FORGED, SMUGGLED, BOUNCE]
        )
        assert [raw for _, raw in box.messages("INBOX")] == [GENUINE]
        listed = guardmail(config, "evidence", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.decode().splitlines()]
        kinds = {r["subject"]: r.get("impersonation") for r in rows if r["kind"] == "archived"}
        assert kinds == {
            "I know": "forged",
            "trust me": "forged",
            "Undelivered Mail": "backscatter",
        }
        text = guardmail(config, "evidence", "list").stdout.decode()
        assert text.count("impersonation (forged)") == 2, text
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert "event=warning." not in daemon.log_text()  # no warning planned or sent

    message = tmp_path / "forged.eml"
    message.write_bytes(FORGED)
    out = guardmail(config, "explain", "--json", str(message))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["action"] == "quarantine" and data["impersonation"]["kind"] == "forged"
    text = guardmail(config, "explain", str(message)).stdout.decode()
    assert "impersonation (forged)" in text and "DMARC failed at mx.example.org" in text
