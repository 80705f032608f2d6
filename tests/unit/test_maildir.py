"""The Maildir source on a real directory, vault and pipeline: files that are not regular files,
per-file containment of failures, and one archive per message however a client renames it."""

import asyncio
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardmail.channels import maildir
from guardmail.channels.maildir import MaildirSource
from guardmail.core.item import Item, mail_item
from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])
OFFENDER = b"From: stalker@example.net\r\nSubject: hi\r\n\r\nI know where you are.\r\n"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "db.sqlite3")
    yield s
    s.close()


@pytest.fixture
def vault(tmp_path: Path, storage: SQLiteStorage) -> Vault:
    return Vault(tmp_path / "vault", storage, "t")


@pytest.fixture
def source(tmp_path: Path, vault: Vault) -> MaildirSource:
    root = tmp_path / "Maildir"
    maildir.ensure_maildir(root)
    return MaildirSource(
        path=root, account="me", tenant="t", pipeline=Pipeline(vault=vault, rules=RULES)
    )


def archived(vault: Vault) -> list[str]:
    return [str(row.sha256) for row in vault.rows() if row.kind == "archived"]


def release(fifo: Path) -> None:
    """Open ``fifo`` for writing and close it: a reader blocked on it, if any, reads EOF."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        assert exc.errno == errno.ENXIO  # no reader: nothing was blocked


async def handle_bounded(source: MaildirSource, path: Path, fifo: Path) -> None:
    try:
        await asyncio.wait_for(source.handle(path), timeout=10)
    finally:
        release(fifo)


def test_fifo_in_new_is_skipped_without_blocking_and_mail_after_it_is_handled(
    source: MaildirSource, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = source.root / "new" / "1000.fifo.host"
    os.mkfifo(fifo)
    (source.root / "new" / "1001.mail.host").write_bytes(OFFENDER)
    with caplog.at_level(logging.WARNING, logger="guardmail"):
        asyncio.run(handle_bounded(source, fifo, fifo))
        asyncio.run(source.scan())
        asyncio.run(source.scan())
    assert (source.quarantine / "new" / "1001.mail.host").read_bytes() == OFFENDER
    assert fifo.exists() and len(archived(vault)) == 1
    skipped = [r for r in caplog.records if r.getMessage() == "maildir.not_a_regular_file"]
    assert len(skipped) == 1  # logged once, not at every rescan


def test_symlink_in_new_is_not_followed(
    source: MaildirSource, vault: Vault, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.eml"
    outside.write_bytes(OFFENDER)
    link = source.root / "new" / "1000.link.host"
    link.symlink_to(outside)
    asyncio.run(source.scan())
    assert link.is_symlink() and outside.read_bytes() == OFFENDER
    assert archived(vault) == []


def test_read_regular_never_opens_a_fifo_for_a_blocking_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    regular = tmp_path / "file"
    regular.write_bytes(b"x")
    (tmp_path / "link").symlink_to(regular)
    assert maildir.read_regular(fifo) is None
    assert maildir.read_regular(tmp_path / "link") is None
    assert maildir.read_regular(regular) == b"x"


def test_a_failure_building_one_item_leaves_that_file_and_handles_the_next(
    source: MaildirSource,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing_on_poison(raw: bytes, **kw: Any) -> Item:
        if b"poison" in raw:
            raise RuntimeError("a bug in item building")
        return mail_item(raw, **kw)

    monkeypatch.setattr(maildir, "mail_item", failing_on_poison)
    poison = b"From: stalker@example.net\r\n\r\npoison\r\n"
    (source.root / "new" / "1000.poison.host").write_bytes(poison)
    (source.root / "new" / "1001.mail.host").write_bytes(OFFENDER)
    with caplog.at_level(logging.ERROR, logger="guardmail"):
        asyncio.run(source.scan())
    assert (source.root / "new" / "1000.poison.host").read_bytes() == poison
    assert (source.quarantine / "new" / "1001.mail.host").exists()
    assert [r.getMessage() for r in caplog.records] == ["maildir.item_failed"]


def test_message_renamed_by_a_client_after_a_failed_move_is_archived_once(
    source: MaildirSource, vault: Vault
) -> None:
    new = source.root / "new" / "1000.mail.host"
    new.write_bytes(OFFENDER)
    source.quarantine.write_text("a file where the quarantine folder goes: the move fails")
    asyncio.run(source.scan())
    assert new.exists() and len(archived(vault)) == 1
    # While guardmail is down, the mail client reads it: new/NAME becomes cur/NAME:2,S.
    cur = source.root / "cur" / "1000.mail.host:2,S"
    os.rename(new, cur)
    source.quarantine.unlink()
    asyncio.run(source.scan())
    assert (source.quarantine / "cur" / "1000.mail.host:2,S").read_bytes() == OFFENDER
    assert len(archived(vault)) == 1


def test_a_file_the_vault_refused_waits_for_its_backoff_whatever_the_rescans(
    source: MaildirSource, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    """Every rescan used to retry it at once (and log it again): with ``rescan_seconds: 0.3`` a
    vault outage meant an archive attempt and a warning per file three times a second."""
    new = source.root / "new" / "1000.mail.host"
    new.write_bytes(OFFENDER)
    vault.root.parent.mkdir(parents=True, exist_ok=True)
    vault.root.write_text("a file where the vault directory goes: archiving fails")

    async def outage() -> None:
        for _ in range(5):
            await source.scan()
        # A client reading it meanwhile: the retry follows the file to its new name.
        os.rename(new, source.root / "cur" / "1000.mail.host:2,S")
        await source.scan()

    with caplog.at_level(logging.WARNING, logger="guardmail"):
        asyncio.run(outage())
    refused = [r for r in caplog.records if r.getMessage() == "maildir.vault_unavailable"]
    assert len(refused) == 1 and archived(vault) == []
    assert (source.root / "cur" / "1000.mail.host:2,S").read_bytes() == OFFENDER
    vault.root.unlink()

    async def rules_changed() -> None:
        source.rejudge()  # every file at once, those waiting for the vault too
        await source.scan()

    asyncio.run(rules_changed())
    assert (source.quarantine / "cur" / "1000.mail.host:2,S").read_bytes() == OFFENDER
    assert len(archived(vault)) == 1
