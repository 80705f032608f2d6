"""The Maildir source while mail keeps arriving: a reload judges the existing mail again at once,
and a file the vault refused is retried on its own backoff, neither waiting for a quiet spell."""

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guardmail.channels import maildir
from guardmail.channels.maildir import MaildirSource
from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

OLD = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])
NEW = RuleSet([*OLD.offenders, OffenderRule(name="Later", addresses=("later@example.org",))])
LATER = b"From: later@example.org\r\nSubject: before\r\n\r\nsent before the report\r\n"
OFFENDER = b"From: stalker@example.net\r\nSubject: hi\r\n\r\nI know where you are.\r\n"
BOUND = 10.0  # seconds: generous; the rescan is an hour away, so only "at once" passes


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    yield Vault(tmp_path / "vault", storage, "t")
    storage.close()


def deliver(root: Path, name: str, raw: bytes) -> None:
    (root / "tmp" / name).write_bytes(raw)
    os.rename(root / "tmp" / name, root / "new" / name)


async def until(predicate: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - files on disk, no event to wait on
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout=BOUND)
    except TimeoutError:
        raise AssertionError(f"not within {BOUND} s: {what}") from None


async def busy(root: Path) -> None:
    """Someone else's mail, a message every 50 ms."""
    n = 0
    while True:
        deliver(root, f"busy{n}", f"From: friend@x.example\r\n\r\n{n}\r\n".encode())
        n += 1
        await asyncio.sleep(0.05)


def source_for(tmp_path: Path, vault: Vault, rules: RuleSet) -> MaildirSource:
    root = tmp_path / "Maildir"
    maildir.ensure_maildir(root)
    # Made before watching: watchdog warns from its thread, now and then, about the watch it
    # adds on a directory made under it (a race of its own, not what these tests are about).
    maildir.ensure_maildir(root / ".Quarantine")
    return MaildirSource(
        path=root,
        account="me",
        tenant="t",
        pipeline=Pipeline(vault=vault, rules=rules),
        rescan_seconds=3600,
    )


def test_a_reload_judges_existing_mail_again_at_once_while_new_mail_keeps_arriving(
    tmp_path: Path, vault: Vault
) -> None:
    source = source_for(tmp_path, vault, OLD)
    deliver(source.root, "before", LATER)

    async def scenario() -> None:
        watching = asyncio.create_task(source.run())
        feeding = asyncio.create_task(busy(source.root))
        try:
            await until(lambda: "before" in source._passed, "first judged clean")
            await asyncio.sleep(0.3)  # well into the busy spell
            source.pipeline.rules = NEW  # as Tenant.apply does on a reload ...
            source.rejudge()  # ... and then Daemon.reload
            await until(
                lambda: (source.quarantine / "new" / "before").exists(), "moved after reload"
            )
        finally:
            feeding.cancel()
            watching.cancel()
            await asyncio.gather(watching, feeding, return_exceptions=True)

    asyncio.run(scenario())
    assert not (source.root / "new" / "before").exists()


def test_a_file_the_vault_refused_is_retried_on_its_own_backoff_while_mail_keeps_arriving(
    tmp_path: Path, vault: Vault
) -> None:
    source = source_for(tmp_path, vault, OLD)
    deliver(source.root, "refused", OFFENDER)
    sha = hashlib.sha256(OFFENDER).hexdigest()
    vault.blobs.root.mkdir(parents=True)
    blocker = vault.blobs.root / sha[:2]
    blocker.write_text("a file where a blob directory should be")

    async def scenario() -> None:
        watching = asyncio.create_task(source.run())
        feeding = asyncio.create_task(busy(source.root))
        try:
            await until(lambda: bool(source._retry), "vault refused")
            await asyncio.sleep(0.3)
            blocker.unlink()  # the vault recovers
            await until(lambda: (source.quarantine / "new" / "refused").exists(), "moved on retry")
        finally:
            feeding.cancel()
            watching.cancel()
            await asyncio.gather(watching, feeding, return_exceptions=True)

    asyncio.run(scenario())
    assert [row.sha256 for row in vault.rows() if row.kind == "archived"] == [sha]
