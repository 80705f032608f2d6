"""guardmail watching the Maildir of a real Dovecot: mail delivered over LMTP is judged, and the
quarantine folder it creates is a real IMAP folder the victim's mail client sees."""

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"})
    yield server
    server.stop()


def fetch_all(conn: imaplib.IMAP4, folder: str) -> list[bytes]:
    typ, _ = conn.select(f'"{folder}"', readonly=True)
    assert typ == "OK", folder
    typ, data = conn.uid("SEARCH", "ALL")
    uids = data[0].split() if data and data[0] else []
    out: list[bytes] = []
    for uid in uids:
        typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
        assert typ == "OK"
        out.extend(p[1] for p in parts if isinstance(p, tuple))
    return out


def test_offender_mail_delivered_by_dovecot_lands_in_an_imap_quarantine_folder(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    clean = b"From: friend@innocent.example\r\nSubject: lunch?\r\n\r\nsee you\r\n"
    offender = b"From: Stalker <st4lker7@fresh.example>\r\nSubject: you\r\n\r\nthreat\r\n"
    dovecot.deliver("alice@example.org", clean)
    maildir = dovecot.maildir("alice")
    wait_for(lambda: any((maildir / "new").iterdir()), what="clean delivery")
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp_path}/var
offenders:
  - name: Example Offender
    patterns: ["re:^st[a4]lker[0-9]*@"]
sources:
  maildir:
    - path: {maildir}
      name: alice
"""
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="daemon start")
        dovecot.deliver("alice@example.org", offender, sender="st4lker7@fresh.example")
        quarantined = maildir / ".Quarantine" / "new"
        wait_for(lambda: quarantined.is_dir() and any(quarantined.iterdir()), what="quarantine")
    finally:
        assert daemon.stop() == 0, daemon.log_text()

    [qfile] = list(quarantined.iterdir())
    stored = qfile.read_bytes()  # what Dovecot wrote: LMTP's trace headers + our message
    assert stored.endswith(offender.replace(b"\r\n", b"\n"))

    conn = dovecot.imap("alice")
    try:
        typ, folders = conn.list()
        assert typ == "OK"
        names = [f for f in folders if isinstance(f, bytes)]
        assert any(re.search(rb'"Quarantine"|\sQuarantine$', f) for f in names), folders
        [in_quarantine] = fetch_all(conn, "Quarantine")
        inbox = fetch_all(conn, "INBOX")
    finally:
        conn.logout()
    # IMAP serves the Maildir file with CRLF line ends; the bytes are otherwise the same.
    assert in_quarantine == stored.replace(b"\n", b"\r\n")
    assert len(inbox) == 1 and b"Subject: lunch?" in inbox[0]
    assert not dovecot.log().count("Error:"), dovecot.log()

    listing = guardmail(config, "evidence", "list", "--json")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 1
    shown = guardmail(config, "evidence", "show", "1")
    assert shown.stdout == stored
