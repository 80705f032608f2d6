"""The real daemon on a real Dovecot, killed where the crash campaign (tests/chaos/imap.py) found
promises broken: offenders added while it was down, a crash between a MOVE and its journal entry,
and (without MOVE) a crash between the UID COPY and the UID EXPUNGE."""

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_imap_dovecot import NO_MOVE, OFFENDER, Mailbox, config_text
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

LATE = b"From: Later <later@late.example>\r\nSubject: hello\r\n\r\nnot yet an offender\r\n"
LATE_OFFENDER = "  - name: Later\n    addresses: [later@late.example]\n"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


@pytest.fixture
def no_move() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True, extra_conf=NO_MOVE)
    yield server
    server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def run(config: Path, started: list[Daemon], name: str) -> Daemon:
    d = Daemon(config, config.parent / f"{name}.log")
    started.append(d)
    return d


def killed(d: Daemon) -> None:
    """Wait for the daemon to kill itself at its GUARDMAIL_FAULT point."""
    wait_for(lambda: d.proc.poll() is not None, timeout=30, what="the crash point")
    assert d.proc.returncode == -signal.SIGKILL, d.log_text()


def actions(config: Path) -> list[dict[str, object]]:
    """The ``action`` entries of the default tenant's journal, once it verifies."""
    checked = guardmail(config, "evidence", "verify")
    assert checked.returncode == 0, checked.stderr
    storage = SQLiteStorage(config.parent / "var" / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            rows = [json.loads(r.body) for r in tx.journal_rows("default")]
    finally:
        storage.close()
    return [r for r in rows if r.get("kind") == "action"]


def test_an_offender_added_while_the_daemon_was_down_is_applied_to_mail_already_judged(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    text = config_text(tmp_path, dovecot)
    config.write_text(text)
    box = Mailbox(dovecot)
    box.append(LATE)
    first = run(config, daemons, "first")
    wait_for(lambda: "imap.caught_up" in first.log_text(), what="judged clean")
    assert first.stop() == 0
    # The new offender's file is written while nothing runs to notice a reload.
    config.write_text(text.replace("sources:\n", LATE_OFFENDER + "sources:\n"))
    second = run(config, daemons, "second")
    wait_for(lambda: box.count("Quarantine") == 1, what="re-judged at start")
    assert [raw for _, raw in box.messages("Quarantine")] == [LATE]
    assert box.count("INBOX") == 0
    assert second.stop() == 0
    # The rules did not change since: a start re-reads nothing.
    third = run(config, daemons, "third")
    wait_for(lambda: "imap.connected" in third.log_text(), what="third start")
    box.append(b"From: friend@innocent.example\r\nSubject: x\r\n\r\ny\r\n")
    wait_for(lambda: "imap.caught_up" in third.log_text(), what="new mail judged")
    assert third.stop() == 0
    assert "imap.rejudged" not in third.log_text()


def test_a_crash_between_the_move_and_its_journal_entry_is_reconciled_at_the_next_start(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    box.append(OFFENDER)
    monkeypatch.setenv("GUARDMAIL_FAULT", "imap.moved:1")
    killed(run(config, daemons, "crashed"))
    monkeypatch.delenv("GUARDMAIL_FAULT")
    assert box.count("Quarantine") == 1 and box.count("INBOX") == 0
    assert actions(config) == []  # moved, not journaled
    again = run(config, daemons, "again")
    wait_for(lambda: "action.reconciled" in again.log_text(), what="reconciled")
    assert again.stop() == 0
    [action] = actions(config)
    assert "no longer in INBOX" in str(action["done"])
    assert box.count("Quarantine") == 1


@pytest.mark.parametrize("point", ["imap.copied", "imap.flagged"])
def test_without_move_a_crash_before_the_expunge_leaves_one_copy_in_quarantine(
    no_move: Dovecot,
    tmp_path: Path,
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, no_move))
    box = Mailbox(no_move)
    box.append(OFFENDER)
    monkeypatch.setenv("GUARDMAIL_FAULT", f"{point}:1")
    killed(run(config, daemons, "crashed"))
    monkeypatch.delenv("GUARDMAIL_FAULT")
    assert box.count("Quarantine") == 1 and box.count("INBOX") == 1  # copied, not expunged
    again = run(config, daemons, "again")
    wait_for(lambda: box.count("INBOX") == 0, what="expunged after the restart")
    assert again.stop() == 0
    assert [raw for _, raw in box.messages("Quarantine")] == [OFFENDER]
    [action] = actions(config)
    assert "already copied" in str(action["done"])
