"""A crash between a Maildir action and its journal entry is reconciled at the next start: every
archived item ends with exactly one ``action`` entry, and nothing is acted on twice."""

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from guardmail.channels import maildir as maildir_module
from guardmail.channels.maildir import MaildirSource
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

MAIL = b"From: stalker@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


class Stop(Exception):
    """Ends ``MaildirSource.run`` after its first scan."""


OPEN: list[SQLiteStorage] = []


class NoObserver:
    """watchdog's Observer, idle: each test drives one scan itself (no thread to outlive it)."""

    def schedule(self, *args: object, **kwargs: object) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self) -> None: ...


@pytest.fixture(autouse=True)
def no_observer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir_module, "Observer", NoObserver)


@pytest.fixture(autouse=True)
def close_storages() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Daemon:
    """One run of the daemon's Maildir source over the same state and Maildir."""

    def __init__(self, root: Path, action: Action = Action.QUARANTINE) -> None:
        self.storage = SQLiteStorage(root / "state" / "guardmail.sqlite3")
        OPEN.append(self.storage)
        self.vault = Vault(root / "state" / "vault" / "jane", self.storage, "jane")
        rules = RuleSet(
            [OffenderRule(name="Ex", addresses=("stalker@example.net",), action=action)]
        )
        self.source = MaildirSource(
            path=root / "Maildir",
            account="jane@example.org",
            tenant="jane",
            pipeline=Pipeline(vault=self.vault, rules=rules),
        )

    def start_and_scan_once(self) -> None:
        """The source's start-up as the daemon runs it, up to the end of its first scan."""
        real_scan = self.source.scan

        async def scan_then_stop() -> None:
            await real_scan()
            raise Stop

        self.source.scan = scan_then_stop  # type: ignore[method-assign]
        with pytest.raises(Stop):
            asyncio.run(self.source.run())

    def actions(self) -> list[dict[str, Any]]:
        return [journal.entry(r) for r in self.vault.rows(kind="action")]


def killed_before_journaling(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """The action happens; the process dies before its journal entry is committed."""

    commit = daemon.vault.commit

    def die(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        if all(isinstance(e, Record) for e in entries):  # the action entries
            raise VaultUnavailable("SIGKILL")
        return commit(entries, **kwargs)

    monkeypatch.setattr(daemon.vault, "commit", die)


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    (tmp_path / "Maildir" / "new" / "1700000000.1.host").write_bytes(MAIL)
    return tmp_path / "Maildir"


def test_kill_after_the_move_is_journaled_once_at_restart_with_where_the_item_is(
    tmp_path: Path, maildir: Path
) -> None:
    first = Daemon(tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        killed_before_journaling(first, mp)
        first.start_and_scan_once()
    quarantined = maildir / ".Quarantine" / "new" / "1700000000.1.host"
    assert quarantined.read_bytes() == MAIL
    assert first.actions() == [] and len(first.vault.rows(kind="archived")) == 1

    for _ in range(2):  # a restart, and another one: still one action entry
        again = Daemon(tmp_path)
        again.start_and_scan_once()
        actions = again.actions()
        assert [(a["archived_seq"], a["done"]) for a in actions] == [
            (1, "action reconciled after restart: in .Quarantine/new/1700000000.1.host")
        ]
        assert quarantined.read_bytes() == MAIL and list((maildir / "new").iterdir()) == []
    assert verify_vault(again.vault) == []


def test_kill_before_the_move_acts_at_restart_through_the_normal_path_once(
    tmp_path: Path, maildir: Path
) -> None:
    first = Daemon(tmp_path)

    def die(*args: object) -> str:
        raise OSError("SIGKILL before the rename")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(first.source, "_act", die)
        first.start_and_scan_once()
    assert (maildir / "new" / "1700000000.1.host").exists()
    assert first.actions() == [] and len(first.vault.rows(kind="archived")) == 1

    again = Daemon(tmp_path)
    again.start_and_scan_once()
    assert [(a["archived_seq"], a["done"]) for a in again.actions()] == [
        (1, "moved to .Quarantine/new/1700000000.1.host")
    ]
    assert len(again.vault.rows(kind="archived")) == 1
    assert (maildir / ".Quarantine" / "new" / "1700000000.1.host").read_bytes() == MAIL


def test_kill_after_a_delete_is_journaled_at_restart_as_gone(tmp_path: Path, maildir: Path) -> None:
    first = Daemon(tmp_path, Action.BLOCK)
    with pytest.MonkeyPatch.context() as mp:
        killed_before_journaling(first, mp)
        first.start_and_scan_once()
    assert list((maildir / "new").iterdir()) == []

    again = Daemon(tmp_path, Action.BLOCK)
    again.start_and_scan_once()
    assert [(a["action"], a["done"]) for a in again.actions()] == [
        ("block", "action reconciled after restart: gone from the Maildir")
    ]


def test_a_journal_edited_by_hand_does_not_stop_the_source_from_starting(
    tmp_path: Path, maildir: Path
) -> None:
    first = Daemon(tmp_path)
    first.start_and_scan_once()
    first.storage._conn.execute("UPDATE journal SET body = 'not json' WHERE seq = 1")
    (maildir / "new" / "1700000001.2.host").write_bytes(MAIL.replace(b"body", b"more"))
    again = Daemon(tmp_path)
    again.start_and_scan_once()  # reconciling fails (logged); the scan still protects
    assert (maildir / ".Quarantine" / "new" / "1700000001.2.host").exists()
