"""The pipeline archives before it acts, and never acts when the vault cannot take the item."""

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.core.item import Item, mail_item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.pipeline_batch import Outcome
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from guardmail.vault.group import committer
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault

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


class AnsweringActor:
    """An actor whose action is its answer (the milter): it only describes what it will do."""

    wait_witness = False

    def __init__(self) -> None:
        self.described: list[str] = []

    async def act(self, item: Item, verdict: Verdict) -> str:
        raise AssertionError("act is not called for an actor that describes")

    def describe(self, item: Item, verdict: Verdict) -> str:
        self.described.append(str(verdict.action))
        return "answered"


def test_an_answering_actors_action_entry_commits_with_the_archive_in_one_group(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    actor = AnsweringActor()
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    raw = b"From: Stalker <stalker@example.net>\r\nSubject: hi\r\n\r\nbody"
    outcome = asyncio.run(pipeline.process(item(raw), actor))
    assert actor.described == ["quarantine"] and outcome.done == "answered"
    archived, action = vault.rows()
    assert (archived.kind, action.kind) == ("archived", "action")
    assert journal.entry(action)["archived_seq"] == archived.seq
    assert action.sha256 == archived.sha256 == sha(raw)
    assert committer(vault).groups == 1  # one commit for both entries
    # The same bytes again in the same scope: the first receipt, and the action entry names it
    # (the milter answers such a retry from the journal instead, with no second entry).
    again = asyncio.run(pipeline.process(item(raw), AnsweringActor()))
    assert again.receipt is not None and again.receipt.duplicate
    assert journal.entry(vault.rows()[-1])["archived_seq"] == archived.seq
    assert verify_vault(vault) == []


def test_an_answering_actor_hears_of_a_vault_failure_and_nothing_is_journaled(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    (tmp_path / "vault").write_text("not a directory")
    vault = Vault(tmp_path / "vault", storage, "t")
    with pytest.raises(VaultUnavailable):
        asyncio.run(
            Pipeline(vault=vault, rules=RULES).process(
                item(b"From: stalker@example.net\n\n"), AnsweringActor()
            )
        )
    assert vault.rows() == []


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


# --- batches: process_many (event loop) and run_many (the caller's thread) ------------------


class BatchActor:
    """Acts on a batch at once; notes each call and whether every blob was in the vault then."""

    def __init__(self, vault: Vault, fail: Exception | None = None) -> None:
        self.vault = vault
        self.fail = fail
        self.calls: list[list[tuple[str, str, bool]]] = []

    def act_many_now(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        self.calls.append(
            [
                (i.source_ref, str(v.action), self.vault.blobs.path(sha(i.raw)).exists())
                for i, v in zip(items, verdicts, strict=True)
            ]
        )
        if self.fail is not None:
            raise self.fail
        return [f"moved {i.source_ref} with {len(items) - 1} others" for i in items]

    async def act_many(self, items: Sequence[Item], verdicts: Sequence[Verdict]) -> list[str]:
        return self.act_many_now(items, verdicts)


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def drive(driver: str, pipeline: Pipeline, items: list[Item], actor: BatchActor) -> list[Outcome]:
    if driver == "run_many":
        return pipeline.run_many(items, actor.act_many_now)
    return asyncio.run(pipeline.process_many(items, actor))


DRIVERS = pytest.mark.parametrize("driver", ["process_many", "run_many"])


def offender(n: int) -> Item:
    raw = f"From: stalker@example.net\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()
    return mail_item(raw, tenant="t", account="acct", source_ref=f"uid/{n}", received_at=NOW)


def clean(n: int) -> Item:
    raw = f"From: friend@x.example\r\nSubject: {n}\r\n\r\nhi\r\n".encode()
    return mail_item(raw, tenant="t", account="acct", source_ref=f"uid/{n}", received_at=NOW)


@DRIVERS
def test_batch_is_archived_then_acted_on_at_once_then_journaled_then_warned_in_order(
    tmp_path: Path, storage: SQLiteStorage, driver: str
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    hooked: list[tuple[str, int]] = []

    def after_block(item: Item, verdict: Verdict) -> None:
        hooked.append((item.source_ref, len(vault.rows(kind="action"))))

    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW, after_block=after_block)
    actor = BatchActor(vault)
    items = [offender(1), clean(2), offender(3), clean(4), offender(5)]
    outcomes = drive(driver, pipeline, items, actor)
    assert actor.calls == [[(f"uid/{n}", "quarantine", True) for n in (1, 3, 5)]]
    assert [o.verdict.action for o in outcomes] == [
        Action.QUARANTINE,
        Action.PASS,
        Action.QUARANTINE,
        Action.PASS,
        Action.QUARANTINE,
    ]
    assert [o.receipt is None for o in outcomes] == [False, True, False, True, False]
    assert [o.done for o in outcomes] == [
        "moved uid/1 with 2 others",
        None,
        "moved uid/3 with 2 others",
        None,
        "moved uid/5 with 2 others",
    ]
    rows = vault.rows()
    assert [r.kind for r in rows] == ["archived"] * 3 + ["action"] * 3
    assert [journal.entry(r)["archived_seq"] for r in rows[3:]] == [1, 2, 3]
    assert [r.source_ref for r in rows] == ["uid/1", "uid/3", "uid/5"] * 2
    assert hooked == [("uid/1", 3), ("uid/3", 3), ("uid/5", 3)]  # after the actions' commit
    assert vault.head_witness() == (6, rows[-1].hash)
    assert verify_vault(vault) == []


@DRIVERS
def test_vault_failing_part_way_means_no_action_and_the_retry_archives_each_once(
    tmp_path: Path, storage: SQLiteStorage, driver: str
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    actor = BatchActor(vault)
    items = [offender(n) for n in range(1, 4)]
    vault.blobs.root.mkdir(parents=True)
    blocker = vault.blobs.path(sha(items[1].raw)).parent
    assert blocker != vault.blobs.path(sha(items[0].raw)).parent
    blocker.write_text("a file where a blob directory should be")
    with pytest.raises(VaultUnavailable):
        drive(driver, pipeline, items, actor)
    assert actor.calls == [] and vault.rows() == []
    # Blobs are renamed into place only once all of the group's are written and fsync'd.
    assert not vault.blobs.path(sha(items[0].raw)).exists()
    blocker.unlink()
    outcomes = drive(driver, pipeline, items, actor)
    receipts = [o.receipt for o in outcomes if o.receipt is not None]
    assert [(r.seq, r.duplicate) for r in receipts] == [(1, False), (2, False), (3, False)]
    assert [r.kind for r in vault.rows()] == ["archived"] * 3 + ["action"] * 3
    assert verify_vault(vault) == []


@DRIVERS
def test_failed_action_leaves_the_archive_witnessed_and_the_retry_archives_nothing_twice(
    tmp_path: Path, storage: SQLiteStorage, driver: str
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    items = [offender(n) for n in range(1, 3)]
    with pytest.raises(ConnectionError):
        drive(driver, pipeline, items, BatchActor(vault, fail=ConnectionError("dropped")))
    archived = vault.rows()
    assert [r.kind for r in archived] == ["archived", "archived"]
    assert vault.head_witness() == (2, archived[-1].hash)  # written although the act failed
    outcomes = drive(driver, pipeline, items, BatchActor(vault))
    assert [(o.receipt.seq, o.receipt.duplicate) for o in outcomes if o.receipt] == [
        (1, True),
        (2, True),
    ]
    assert [r.kind for r in vault.rows()] == ["archived"] * 2 + ["action"] * 2
    assert verify_vault(vault) == []


@DRIVERS
def test_a_failing_warning_hook_does_not_stop_the_next_items_hooks(
    tmp_path: Path, storage: SQLiteStorage, driver: str
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    hooked: list[str] = []

    def after_block(item: Item, verdict: Verdict) -> None:
        hooked.append(item.source_ref)
        if item.source_ref == "uid/1":
            raise RuntimeError("SMTP server down")

    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW, after_block=after_block)
    outcomes = drive(driver, pipeline, [offender(1), offender(2)], BatchActor(vault))
    assert hooked == ["uid/1", "uid/2"]
    assert all(o.done for o in outcomes)


@DRIVERS
def test_all_clean_batch_is_neither_archived_nor_acted_on(
    tmp_path: Path, storage: SQLiteStorage, driver: str
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    actor = BatchActor(vault)
    outcomes = drive(driver, Pipeline(vault=vault, rules=RULES), [clean(1), clean(2)], actor)
    assert [o.verdict.action for o in outcomes] == [Action.PASS, Action.PASS]
    assert actor.calls == [] and vault.rows() == [] and vault.head_witness() is None


def test_journal_records_what_a_lookalike_sender_looks_like(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    vault = Vault(tmp_path / "vault", storage, "t")
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    raw = "From: st\u0430lker@example.net\r\nReply-To: stalker@example.net\r\n\r\nbody".encode()
    asyncio.run(pipeline.process(item(raw), RecordingActor(vault)))
    archived, _ = vault.rows()
    matches = journal.entry(archived)["matches"]
    assert [m.get("looks_like") for m in matches] == [
        "looks like stalker@example.net: Cyrillic \u0430 (U+0430)",
        None,  # a plain ASCII sender: no key, so older journals read the same
    ]


def test_mail_forged_in_the_persons_name_is_quarantined_as_impersonation(
    tmp_path: Path, storage: SQLiteStorage
) -> None:
    from guardmail.core.impersonation import OwnNames

    vault = Vault(tmp_path / "vault", storage, "t")
    actor = RecordingActor(vault)
    hooked: list[Verdict] = []
    own = OwnNames.build(["sam@example.org"], [], "mx.example.org")
    pipeline = Pipeline(
        vault=vault,
        rules=RULES,
        clock=lambda: NOW,
        own=own,
        after_block=lambda i, v: hooked.append(v),
    )
    forged = (
        b"Authentication-Results: mx.example.org; dmarc=fail header.from=example.org\r\n"
        b"From: Sam <sam@example.org>\r\nSubject: it's me\r\n\r\nbody"
    )
    genuine = forged.replace(b"dmarc=fail", b"dmarc=pass")
    outcome = asyncio.run(pipeline.process(item(forged), actor))
    assert outcome.verdict.action is Action.QUARANTINE and outcome.verdict.offender is None
    assert actor.calls == [("quarantine", True)]
    archived, _ = vault.rows()
    meta = journal.entry(archived)
    assert meta["offender"] is None and meta["impersonation"]["kind"] == "forged"
    assert "DMARC failed at mx.example.org" in meta["impersonation"]["why"]
    # No offender: the warning step sees none (Warner.on_block returns at once for it).
    assert [v.offender for v in hooked] == [None]
    assert asyncio.run(pipeline.process(item(genuine), actor)).verdict.action is Action.PASS
    # An offender's rule still decides first, and names the offender.
    pipeline.rules = RuleSet([OffenderRule(name="Ex", addresses=("sam@example.org",))])
    assert asyncio.run(pipeline.process(item(forged), actor)).verdict.offender == "Ex"


def test_an_answering_actor_waits_for_one_thread_hop_after_the_commit(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linker's learning and the warning step run in one worker-thread call, in that
    order, after the archive is durable: the milter's answer waits for one hop, not two."""
    vault = Vault(tmp_path / "vault", storage, "t")
    steps: list[str] = []
    hops: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(func, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(func, "__name__", "?"))
        return await to_thread(func, *args, **kwargs)

    class Learning:
        def learn(self, items: object, *, now: datetime) -> None:
            steps.append("learn")

    pipeline = Pipeline(
        vault=vault,
        rules=RULES,
        clock=lambda: NOW,
        after_block=lambda i, v: steps.append("warn"),
        linker=Learning(),  # type: ignore[arg-type]
    )
    monkeypatch.setattr("guardmail.pipeline.asyncio.to_thread", counted)
    raw = b"From: Stalker <stalker@example.net>\r\nSubject: hi\r\n\r\nbody"
    outcome = asyncio.run(pipeline.process(item(raw), AnsweringActor()))
    assert outcome.done == "answered" and steps == ["learn", "warn"]
    assert hops == ["rest"]
