"""A full run with debug logging on every channel that logs in, with known passwords (ASCII and
not): no log line, traceback, status output or warning output carries one, in any spelling
(issue 23, "no one let in"). It includes failures: a wrong password on each, then the right one.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_imap_dovecot import Mailbox, offender_mail
from tests.servers.dovecot import start_dovecot
from tests.servers.prosody import DOMAIN, start_prosody
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
IMAP_PASSWORD = "Üb3r-gehéim-Ω"
XMPP_PASSWORD = "xmpp-S3cret-pw"
SMTP_PASSWORD = "smtp-Pässwort-9"
VICTIM = f"victim@{DOMAIN}"


def spellings(secret: str) -> list[str]:
    """The password as logs could carry it: as is, its non-ASCII letters, base64 of SASL
    PLAIN and of the password alone, and Python's repr escapes."""
    found = [secret, secret.encode("unicode_escape").decode(), repr(secret)[1:-1]]
    found += [c for c in secret if not c.isascii()]
    for user in ("alice", "victim", VICTIM):
        found.append(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())
    found.append(base64.b64encode(secret.encode()).decode())
    return [s for s in dict.fromkeys(found) if s]


def config(tmp: Path, dovecot_port: int, ca: Path, xmpp_port: int, sink: SmtpSink) -> str:
    shutil.copy(REPO / "config" / "warning.txt.j2", tmp / "warning.txt.j2")
    return f"""\
state_dir: {tmp}/var
log_level: debug
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
    jids: [stalker@{DOMAIN}]
warning:
  send: on_first_block
  from: "Jane Victim <jane@example.org>"
  subject: Stop contacting me
  template_file: {tmp}/warning.txt.j2
  law: "the Protection from Harassment Act 1997"
  smtp:
    host: 127.0.0.1
    port: {sink.port}
    tls: starttls
    ca_file: {sink.ca_file}
    username: victim
    password_file: {tmp}/smtp-password
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {dovecot_port}
      tls: implicit
      ca_file: {ca}
      username: alice
      password_file: {tmp}/imap-password
      poll_seconds: 0.5
  xmpp:
    - name: victim
      jid: {VICTIM}
      host: 127.0.0.1
      port: {xmpp_port}
      tls: starttls
      ca_file: {tmp}/xmpp-ca.pem
      password_file: {tmp}/xmpp-password
      ping_seconds: 2
      timeout_seconds: 5
"""


def test_debug_logs_and_status_never_carry_a_password(tmp_path: Path) -> None:
    dovecot = start_dovecot({"alice": IMAP_PASSWORD}, tls=True)
    prosody = start_prosody({"victim": XMPP_PASSWORD, "stalker": "st-pw"}, log_level="info")
    outputs: list[str] = []
    try:
        assert dovecot.ca_file is not None
        shutil.copy(prosody.ca_file, tmp_path / "xmpp-ca.pem")
        with SmtpSink(tmp_path / "smtp-ca.pem", password=SMTP_PASSWORD) as sink:
            (tmp_path / "guardmail.yaml").write_text(
                config(tmp_path, dovecot.imaps_port, dovecot.ca_file, prosody.port, sink)
            )
            # First with wrong passwords everywhere (each failure path logs), then right ones.
            for name in ("imap", "xmpp", "smtp"):
                (tmp_path / f"{name}-password").write_text("wrong-" + name + "\n")
            wrong = Daemon(tmp_path / "guardmail.yaml", tmp_path / "wrong.log")
            try:
                wait_for(lambda: "imap.login_failed" in wrong.log_text(), what="imap refused")
                wait_for(lambda: "xmpp.login_failed" in wrong.log_text(), what="xmpp refused")
            finally:
                wrong.stop()
            outputs.append(wrong.log_text())
            (tmp_path / "imap-password").write_text(IMAP_PASSWORD + "\n", encoding="utf-8")
            (tmp_path / "xmpp-password").write_text(XMPP_PASSWORD + "\n")
            (tmp_path / "smtp-password").write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
            daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
            try:
                wait_for(lambda: "imap.connected" in daemon.log_text(), what="imap in")
                wait_for(lambda: "xmpp.caught_up" in daemon.log_text(), what="xmpp in")
                Mailbox(dovecot).append(offender_mail(1))
                stalker = prosody.peer("stalker")
                try:
                    stalker.send(
                        f"<message to='{VICTIM}' type='chat' id='s1'><body>hi</body></message>"
                    )
                finally:
                    stalker.close()
                wait_for(
                    lambda: daemon.log_text().count("item.quarantined") >= 2, what="both caught"
                )
                wait_for(lambda: "warning." in daemon.log_text(), what="the warning tried")
                for args in (("status", "--json"), ("warn", "--status"), ("status",)):
                    done = guardmail(tmp_path / "guardmail.yaml", *args)
                    outputs.append(done.stdout.decode(errors="replace"))
                    outputs.append(done.stderr.decode(errors="replace"))
            finally:
                daemon.stop()
            outputs.append(daemon.log_text())
            assert len(sink.received) == 1  # the warning went out, logged in with the password
    finally:
        dovecot.stop()
        prosody.stop()
    status_file = tmp_path / "var" / "status.json"
    outputs.append(status_file.read_text() if status_file.exists() else "")
    text = "\n".join(outputs)
    assert "level=debug" in text
    for secret in (IMAP_PASSWORD, XMPP_PASSWORD, SMTP_PASSWORD):
        for spelling in spellings(secret):
            assert spelling not in text, f"a spelling of a password is in the output: {spelling!r}"
