"""The XMPP watcher killed at its crash points (guardmail/faults.py) against a real Prosody: what
it did on the server before the kill is still its own to undo afterwards."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from guardmail.storage.sqlite import SQLiteStorage
from tests.conftest import wait_for
from tests.integration.test_xmpp_prosody import (
    VICTIM,
    Daemon,
    archived,
    blocklist,
    config_text,
    daemons,
    peer,
    peers,
    prosody,
    start,
)
from tests.servers.prosody import DOMAIN, Peer, Prosody

__all__ = ["daemons", "peers", "prosody"]  # fixtures, shared with the watcher's tests

pytestmark = pytest.mark.integration

BLOCK = "      server_block: true\n"


def test_a_block_the_server_took_just_before_a_crash_is_still_guardmails_to_lift(
    prosody: Prosody,
    tmp_path: Path,
    peers: list[Peer],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once recorded only after the server took it, a crash in between left the entries looking
    # like the person's own blocks: never lifted when the offender left the list.
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, prosody, action="block") + BLOCK)
    phone = peer(prosody, peers, "victim", resource="phone", priority=5)
    phone.iq("<block xmlns='urn:xmpp:blocking'><item jid='mine@elsewhere.example'/></block>")
    monkeypatch.setenv("GUARDMAIL_FAULT", "xmpp.blocklisted:1")
    crashed = start(tmp_path, daemons, "crashed", wait=False)
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL, crashed.log_text()
    assert blocklist(phone) == {f"stalker@{DOMAIN}", "harass.example", "mine@elsewhere.example"}
    monkeypatch.delenv("GUARDMAIL_FAULT")
    daemon = start(tmp_path, daemons)
    wait_for(lambda: "xmpp.blocklist_synced" in daemon.log_text(), what="blocklist synced")
    config.write_text(config_text(tmp_path, prosody, offenders=False) + BLOCK)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.count("xmpp.blocklist_synced") >= 2, what="resynced after reload")
    assert blocklist(phone) == {"mine@elsewhere.example"}  # the person's own block stays
    assert daemon.stop() == 0


def actions(tmp: Path) -> list[dict[str, object]]:
    storage = SQLiteStorage(tmp / "var" / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            return [json.loads(r.body) for r in tx.journal_rows("default", kind="action")]
    finally:
        storage.close()


def test_a_crash_just_after_a_messages_archive_leaves_its_action_entry_beside_it(
    prosody: Prosody,
    tmp_path: Path,
    peers: list[Peer],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing is done to a message, so its action entry is committed in its archived entry's
    # transaction (intake.py): killed right after that commit, nothing is left to reconcile,
    # and the copy the next start reads from the server archive is not archived again.
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    monkeypatch.setenv("GUARDMAIL_FAULT", "pipeline.archived:1")
    crashed = start(tmp_path, daemons, "crashed")
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='c1'><body>still here</body></message>")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL, crashed.log_text()
    monkeypatch.delenv("GUARDMAIL_FAULT")
    daemon = start(tmp_path, daemons)
    assert daemon.stop() == 0
    assert "action.reconciled" not in daemon.log_text()
    (entry,) = archived(tmp_path)
    assert entry["message_id"] == "c1"
    (action,) = actions(tmp_path)
    assert action["archived_seq"] == entry["seq"]
    assert "reconciled" not in action
    assert str(action["done"]).startswith("archived; not acknowledged")


def test_a_crash_before_a_messages_group_commits_loses_nothing_and_journals_it_once(
    prosody: Prosody,
    tmp_path: Path,
    peers: list[Peer],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Killed between the blob's fsync and the transaction: neither entry was journaled; the
    # next start finds the message in the server archive and archives it once, with one
    # action entry (the blob already in place is the same file).
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, prosody))
    monkeypatch.setenv("GUARDMAIL_FAULT", "vault.group:1")
    crashed = start(tmp_path, daemons, "crashed")
    stalker = peer(prosody, peers, "stalker")
    stalker.send(f"<message to='{VICTIM}' type='chat' id='c2'><body>again</body></message>")
    assert crashed.proc.wait(timeout=30) == -signal.SIGKILL, crashed.log_text()
    assert archived(tmp_path) == []
    monkeypatch.delenv("GUARDMAIL_FAULT")
    daemon = start(tmp_path, daemons)
    wait_for(lambda: len(archived(tmp_path)) == 1, what="archived from the server archive")
    assert daemon.stop() == 0
    (entry,) = archived(tmp_path)
    assert entry["message_id"] == "c2"
    (action,) = actions(tmp_path)
    assert action["archived_seq"] == entry["seq"]
    assert str(action["done"]).startswith("archived from the server archive")
