"""Suspected aliases with the real ``guardmail run`` on a real Maildir: an offender's new account
lands in .Review, ``review dismiss`` puts it back byte-identical and it stays,
``review confirm`` makes later mail from the address quarantined directly."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail

pytestmark = pytest.mark.integration

CONFIG = """\
state_dir: {root}/var
aliases:
  enabled: true  # off by default
offenders:
  - name: Mark
    addresses: [mark.dalton@dalton-family.example]
sources:
  maildir:
    - path: {root}/var/Maildir
      rescan_seconds: 0.3
"""

OFFENDER = (
    b"From: Mark Dalton <mark.dalton@dalton-family.example>\r\n"
    b"Subject: you again\r\n\r\nI see you.\r\n"
)
ALIAS = b"From: Mark Dalton <zz9912@gmail.com>\r\nSubject: new me\r\n\r\nGuess who.\r\n"
ALIAS2 = b"From: M. Dalton <markdalton77@yahoo.com>\r\nSubject: again\r\n\r\nStill here.\r\n"
STRANGER = b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: lunch\r\n\r\nHi!\r\n"


def deliver(maildir: Path, name: str, raw: bytes) -> Path:
    tmp = maildir / "tmp" / name
    tmp.write_bytes(raw)
    os.rename(tmp, maildir / "new" / name)
    return maildir / "new" / name


def held(config: Path) -> list[dict[str, object]]:
    out = guardmail(config, "review", "list", "--json")
    assert out.returncode == 0, out.stderr
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def test_alias_is_held_dismissed_back_and_confirmed_into_quarantine(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    review, quarantine = maildir / ".Review", maildir / ".Quarantine"
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        deliver(maildir, "1.offender.host", OFFENDER)
        wait_for(lambda: (quarantine / "new" / "1.offender.host").exists(), what="quarantine")
        deliver(maildir, "2.alias.host", ALIAS)
        deliver(maildir, "3.stranger.host", STRANGER)
        wait_for(lambda: (review / "new" / "2.alias.host").exists(), what="held for review")
        assert (review / "new" / "2.alias.host").read_bytes() == ALIAS
        [item] = held(config)
        assert item["sender"] == "zz9912@gmail.com" and item["offender"] == "Mark"

        out = guardmail(config, "review", "dismiss", str(item["id"]))
        assert out.returncode == 0, out.stderr
        back = maildir / "new" / "2.alias.host"
        assert hashlib.sha256(back.read_bytes()).hexdigest() == item["sha256"]
        # The daemon sees the file come back (an event, then rescans): a later offender item
        # is handled after it, and the dismissed one is still in the inbox.
        deliver(maildir, "4.offender.host", OFFENDER.replace(b"again", b"still"))
        wait_for(lambda: (quarantine / "new" / "4.offender.host").exists(), what="later item")
        assert back.read_bytes() == ALIAS and not (review / "new" / "2.alias.host").exists()

        deliver(maildir, "5.alias2.host", ALIAS2)
        wait_for(lambda: (review / "new" / "5.alias2.host").exists(), what="second alias held")
        second = [i for i in held(config) if i["state"] == "held"]
        assert [i["sender"] for i in second] == ["markdalton77@yahoo.com"]
        reloads = daemon.log_text().count("config.reloaded")
        out = guardmail(config, "review", "confirm", str(second[0]["id"]))
        assert out.returncode == 0, out.stderr
        assert (quarantine / "new" / "5.alias2.host").read_bytes() == ALIAS2
        wait_for(lambda: daemon.log_text().count("config.reloaded") > reloads, what="reload")
        deliver(maildir, "6.alias2.host", ALIAS2.replace(b"again", b"more"))
        wait_for(lambda: (quarantine / "new" / "6.alias2.host").exists(), what="quarantined")
        assert (maildir / "new" / "3.stranger.host").read_bytes() == STRANGER
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    log = daemon.log_text()
    assert log.count("item.held_for_review") == 2
    kinds = guardmail(config, "evidence", "verify")
    assert kinds.returncode == 0, kinds.stderr


# The offender's earlier mail and a new account's: one writer (the text signal), one surname.
HABITS = (
    "Honestly I dont get why you keep ignoring me, its been weeks now and you still wont pick"
    " up.\r\nI drove past the old place on Tuesday, the lights were on til late. Thought you'd"
    " be there.\r\nAnyway. I am not going anywhere, you know that, and your sister knows it"
    " too. Just answer.\r\n"
)
EARLIER = (
    b"From: Mark Dalton <mark.dalton@dalton-family.example>\r\nSubject: hey\r\n\r\n"
    + HABITS.encode()
)
SAME_WRITER = (
    b"From: Jo Dalton <jd.1990@gmail.com>\r\nSubject: hi\r\n\r\nStill nothing?? Fine, whatever.\r\n"
    + (HABITS.split("\r\n", 1)[1].encode())
)
OTHER_WRITER = (
    b"From: Ann Dalton <ann.dalton@gmail.com>\r\nSubject: minutes\r\n\r\n"
    b"Dear colleagues, please find attached the minutes of the committee meeting of 4 November."
    b"\r\nThe budget for the spring workshop was approved; registrations open on the first of"
    b" March.\r\nKindly send any corrections to the secretariat before Friday.\r\n"
)


def test_a_surname_and_the_offenders_writing_are_held_after_a_restart(tmp_path: Path) -> None:
    # The text's signature is stored with the offender's features, read back at the next
    # start (never from the blob), and tips a surname alone (0.02) over the threshold; the same
    # surname with another writer's text stays in the inbox.
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    review, quarantine = maildir / ".Review", maildir / ".Quarantine"
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        deliver(maildir, "1.offender.host", EARLIER)
        wait_for(lambda: (quarantine / "new" / "1.offender.host").exists(), what="quarantine")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    daemon = Daemon(config, tmp_path / "daemon2.log")
    try:
        deliver(maildir, "2.other.host", OTHER_WRITER)
        deliver(maildir, "3.alias.host", SAME_WRITER)
        wait_for(lambda: (review / "new" / "3.alias.host").exists(), what="held for review")
        assert (review / "new" / "3.alias.host").read_bytes() == SAME_WRITER
        [item] = held(config)
        assert item["sender"] == "jd1990@gmail.com" and item["offender"] == "Mark"
        shown = guardmail(config, "review", "show", str(item["id"]), "--json")
        assert shown.returncode == 0, shown.stderr
        assert {s["signal"] for s in json.loads(shown.stdout)["signals"]} == {
            "display_name",
            "text",
        }
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert (maildir / "new" / "2.other.host").read_bytes() == OTHER_WRITER
    assert daemon.log_text().count("item.held_for_review") == 1
