"""The person's side of the conversation in mail, against a real Dovecot: a message in the Sent
folder addressed to an offender is archived (``direction: outgoing``) and left in place; one to
anyone else is not archived; INBOX is still watched and acted on as before."""

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_imap_dovecot import (
    OFFENDER,
    Mailbox,
    config_text,
    evidence,
    journal_entries,
    start,
)
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

TO_OFFENDER = (
    b"From: Alice <alice@home.example>\r\nTo: friend@innocent.example\r\n"
    b"Cc: Stalker <stalker+x@Example.NET>\r\nSubject: stop writing to me\r\n\r\nStop.\r\n"
)
TO_FRIEND = b"From: alice@home.example\r\nTo: friend@innocent.example\r\nSubject: hi\r\n\r\nhi\r\n"


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


def append_sent(server: Dovecot, raw: bytes, folder: str = "Sent") -> None:
    conn: imaplib.IMAP4 = server.imap("alice")
    try:
        conn.create(folder)  # NO if it exists already
        typ, _ = conn.append(folder, "\\Seen", None, raw)
        assert typ == "OK"
    finally:
        conn.logout()


@pytest.mark.parametrize("listed", [False, True], ids=["auto", "sent_folders"])
def test_sent_message_to_an_offender_is_archived_as_the_person_s_side_and_left_in_place(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon], listed: bool
) -> None:
    config = tmp_path / "guardmail.yaml"
    text = config_text(tmp_path, dovecot)
    if listed:
        text += "      sent_folders: [Sent]\n"
    config.write_text(text)
    box = Mailbox(dovecot)
    append_sent(dovecot, TO_FRIEND)  # there before the first start: judged by scan_existing
    d = start(tmp_path, daemons)
    wait_for(lambda: d.log_text().count("imap.connected") >= 2, what="INBOX and Sent watched")
    append_sent(dovecot, TO_OFFENDER)
    box.append(OFFENDER)
    wait_for(lambda: box.count("Quarantine") == 1, what="INBOX offender quarantined")
    wait_for(lambda: "item.kept" in d.log_text(), what="sent message kept")
    assert d.stop() == 0
    # Left in place, unchanged (the \Seen it was appended with, no other flag), not moved.
    assert box.messages("Sent") == [(b"\\Seen", TO_FRIEND), (b"\\Seen", TO_OFFENDER)]
    items = evidence(config)
    sides = {i.get("direction"): i for i in items}
    assert len(items) == 2 and set(sides) == {None, "outgoing"}
    mine = sides["outgoing"]
    assert mine["offender"] == "Example Offender"
    assert "left in the Sent folder" in str(mine["done"])
    shown = guardmail(config, "evidence", "show", str(mine["seq"]))
    assert shown.stdout == TO_OFFENDER
    assert journal_entries(config) >= 4  # two archived, two actions, all intact
    # A restart reconciles nothing and archives nothing twice.
    d2 = start(tmp_path, daemons, "second")
    wait_for(lambda: d2.log_text().count("imap.connected") >= 2, what="watching again")
    assert d2.stop() == 0
    assert "action.reconciled" not in d2.log_text()
    assert len(evidence(config)) == 2
