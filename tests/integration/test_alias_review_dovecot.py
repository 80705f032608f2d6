"""Suspected aliases on a real Dovecot with the real daemon: an offender's new address lands in
Review, ``review dismiss`` restores the message byte-identical to INBOX, ``review confirm``
moves it to Quarantine and later mail from the address is quarantined directly."""

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

OFFENDER = (
    b"From: Mark Dalton <mark.dalton@dalton-family.example>\r\n"
    b"Message-ID: <o1@dalton-family.example>\r\nSubject: you again\r\n\r\nI see you.\r\n"
)
ALIAS = (
    b"From: Mark Dalton <zz9912@gmail.com>\r\nMessage-ID: <a1@mail.gmail.com>\r\n"
    b"Subject: new me\r\n\r\nGuess who.\r\n"
)
ALIAS2 = b"From: M. Dalton <markdalton77@yahoo.com>\r\nSubject: again\r\n\r\nStill here.\r\n"
LATER = b"From: M. Dalton <markdalton77@yahoo.com>\r\nSubject: more\r\n\r\nMore.\r\n"
STRANGER = b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: lunch\r\n\r\nHi!\r\n"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


def held(config: Path) -> list[dict[str, object]]:
    out = guardmail(config, "review", "list", "--json")
    assert out.returncode == 0, out.stderr
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def raws(box: Mailbox, folder: str) -> list[bytes]:
    return [raw for _, raw in box.messages(folder)]


def test_alias_lands_in_review_dismiss_restores_confirm_quarantines(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("secret\n", encoding="utf-8")
    config = tmp_path / "guardmail.yaml"
    config.write_text(f"""\
state_dir: {tmp_path}/var
aliases:
  enabled: true  # off by default
offenders:
  - name: Mark
    addresses: [mark.dalton@dalton-family.example]
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
        box.append(OFFENDER)
        wait_for(lambda: box.count("Quarantine") == 1, what="offender quarantined")
        box.append(ALIAS)
        box.append(STRANGER)
        wait_for(lambda: box.count("Review") == 1, what="alias held in Review")
        assert raws(box, "Review") == [ALIAS]
        [item] = held(config)
        assert item["sender"] == "zz9912@gmail.com" and item["offender"] == "Mark"

        out = guardmail(config, "review", "dismiss", str(item["id"]))
        assert out.returncode == 0, out.stderr
        assert box.count("Review") == 0
        assert sorted(raws(box, "INBOX")) == sorted([ALIAS, STRANGER])  # byte-identical
        box.append(ALIAS2)
        wait_for(lambda: box.count("Review") == 1, what="second alias held")
        # The dismissed one was judged again with ALIAS2 (the watcher's UID order) and stays.
        assert ALIAS in raws(box, "INBOX")

        [second] = [i for i in held(config) if i["state"] == "held"]
        reloads = daemon.log_text().count("config.reloaded")
        out = guardmail(config, "review", "confirm", str(second["id"]))
        assert out.returncode == 0, out.stderr
        assert raws(box, "Quarantine") == [OFFENDER, ALIAS2] and box.count("Review") == 0
        wait_for(lambda: daemon.log_text().count("config.reloaded") > reloads, what="reload")
        box.append(LATER)
        wait_for(lambda: box.count("Quarantine") == 3, what="later mail quarantined directly")
        assert box.count("Review") == 0
        assert sorted(raws(box, "INBOX")) == sorted([ALIAS, STRANGER])
    finally:
        assert daemon.stop() == 0, daemon.log_text()
