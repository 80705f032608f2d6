"""The pipeline archives before it acts, and never acts when the vault cannot take the item."""

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.store import Vault

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])


class RecordingActor:
    """Notes what it was asked to do and whether the bytes were already in the vault then."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.calls: list[tuple[str, bool]] = []

    async def act(self, item: Item, verdict: Verdict) -> str:
        sha = hashlib.sha256(item.raw).hexdigest()
        self.calls.append((str(verdict.action), self.vault.blobs.path(sha).exists()))
        return "moved"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "db.sqlite3")
    yield s
    s.close()


def item(raw: bytes) -> Item:
    return mail_item(raw, tenant="t", account="acct", source_ref="new/1", received_at=NOW)


def test_offender_item_is_archived_before_the_action(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    actor = RecordingActor(vault)
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    raw = b"From: Stalker <stalker@example.net>\r\nSubject: hi\r\n\r\nbody"
    outcome = asyncio.run(pipeline.process(item(raw), actor))
    assert actor.calls == [("quarantine", True)]
    assert outcome.receipt is not None and outcome.done == "moved"
    archived, action = vault.rows()
    meta = journal.entry(archived)
    assert (meta["offender"], meta["rule"], meta["header"], meta["subject"]) == (
        "Ex",
        "addresses[0]: stalker@example.net",
        "From",
        "hi",
    )
    assert journal.entry(action)["archived_seq"] == archived.seq
    assert vault.blobs.get(outcome.receipt.sha256) == raw


def test_clean_item_is_neither_archived_nor_acted_on(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    actor = RecordingActor(vault)
    outcome = asyncio.run(
        Pipeline(vault=vault, rules=RULES).process(item(b"From: friend@x.example\n\n"), actor)
    )
    assert outcome.verdict.action is Action.PASS
    assert actor.calls == [] and vault.rows() == []


def test_vault_failure_means_no_action(tmp_path: Path, storage: SQLiteStorage) -> None:
    (tmp_path / "vault").write_text("not a directory")
    vault = Vault(tmp_path / "vault", storage, "t")
    actor = RecordingActor(vault)
    with pytest.raises(VaultUnavailable):
        asyncio.run(
            Pipeline(vault=vault, rules=RULES).process(
                item(b"From: stalker@example.net\n\n"), actor
            )
        )
    assert actor.calls == []


@pytest.mark.parametrize(
    "raw",
    [
        b'From: stalker@example.net\r\nContent-Type: multipart/mixed; boundary="x\r\n\r\n--x',
        b"From: stalker@example.net\r\nSubject: \x00\xff\xfe\r\n\r\n\x00",
        b"From: stalker@example.net\r\n\r\n" + b"A" * (50 * 1024 * 1024),
        b"From: stalker@example.net",
    ],
    ids=["broken-mime", "nul-and-8bit-headers", "50MB", "no-body-no-newline"],
)
def test_malformed_offender_mail_is_archived_byte_for_byte(
    tmp_path: Path, storage: SQLiteStorage, raw: bytes
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    outcome = asyncio.run(
        Pipeline(vault=vault, rules=RULES).process(item(raw), RecordingActor(vault))
    )
    assert outcome.receipt is not None
    assert vault.blobs.get(outcome.receipt.sha256) == raw
