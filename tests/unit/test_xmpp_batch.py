"""The XMPP watcher hands every stanza that has arrived to the vault in one request (issue 28):
one group commit for the batch, with the messages' action entries in it (nothing is done to a
message); nothing of a stanza is handled (warned, marked durable) before that group is durable,
in arrival order; a subscription request is acted on after its group and its action entry
journaled after that; a failed group is retried whole, nothing of it acted on before it
succeeds."""

from __future__ import annotations

import asyncio
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.channels.xmpp import intake
from guardmail.channels.xmpp.client import Received, StreamContext
from guardmail.channels.xmpp.tee import Slice
from guardmail.channels.xmpp.watch import XmppSource
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.item import Item
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

VICTIM = "victim@example.org"


def stanza(sender: str, sid: str, offset: int) -> Received:
    raw = (
        f"<message from='{sender}/r' to='{VICTIM}' type='chat' id='m-{sid}'>"
        f"<body>{sid}</body><stanza-id xmlns='urn:xmpp:sid:0' id='{sid}' by='{VICTIM}'/>"
        "</message>"
    ).encode()
    return received(raw, offset)


def subscription(sender: str, offset: int) -> Received:
    raw = f"<presence from='{sender}' to='{VICTIM}' type='subscribe'/>".encode()
    return received(raw, offset)


def received(raw: bytes, offset: int) -> Received:
    tag = raw[1 : raw.index(b" ")]
    xml = ET.fromstring(raw.replace(b"<" + tag + b" ", b"<" + tag + b" xmlns='jabber:client' ", 1))
    return Received(
        xml=xml,
        piece=Slice(raw=raw, offset=offset, tag=xml.tag),
        context=StreamContext(
            header=b"<stream:stream>", stream_id="s1", cert_sha256="", connection=1
        ),
        received_at=datetime.now(UTC),
    )


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    yield s
    s.close()


class Watched:
    """A source on a vault whose commits are counted (and held or failed on request)."""

    def __init__(self, tmp: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch):
        self.vault = Vault(tmp / "vault", storage, "default")
        self.release = threading.Event()
        self.release.set()
        self.fail = 0  # groups with archives still to fail
        self.archive_groups: list[list[str]] = []  # source_refs of each group with archives
        self.commits: list[list[str]] = []  # each commit's entries: "archived" or the kind
        self.acted: list[tuple[str, bool]] = []  # (source_ref, archived when acted on)
        self.warned: list[tuple[str, bool]] = []  # (source_ref, archived when warned)
        commit = self.vault.commit

        def counted(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
            refs = [e.source_ref for e in entries if isinstance(e, Archive)]
            if refs:
                self.release.wait(10)
                if self.fail:
                    self.fail -= 1
                    raise VaultUnavailable("disk gone (test)")
                self.archive_groups.append(refs)
            self.commits.append([e.kind if isinstance(e, Record) else "archived" for e in entries])
            return commit(entries, **kwargs)

        monkeypatch.setattr(self.vault, "commit", counted)
        rules = RuleSet(
            [OffenderRule(name="S", jids=("stalker@evil.example",), action=Action.QUARANTINE)]
        )
        cfg = XmppSourceConfig.model_validate(
            {"name": "v", "jid": VICTIM, "host": "127.0.0.1", "password_file": tmp / "pw"}
        )
        pipeline = Pipeline(vault=self.vault, rules=rules, after_block=self._after)
        self.source = XmppSource(cfg=cfg, tenant="default", pipeline=pipeline, storage=storage)
        self.source.intake.sid_trusted = True
        act = self.source.act

        async def recorded(item: Item, verdict: Verdict) -> str:
            archived = {r.source_ref for r in self.vault.rows(kind="archived")}
            self.acted.append((item.source_ref, item.source_ref in archived))
            return await act(item, verdict)

        monkeypatch.setattr(self.source, "act", recorded)

    def _after(self, item: Item, verdict: Verdict) -> None:
        archived = {r.source_ref for r in self.vault.rows(kind="archived")}
        self.warned.append((item.source_ref, item.source_ref in archived))


def test_stanzas_that_arrived_together_share_one_request_with_their_action_entries(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(tmp_path, storage, monkeypatch)
    w.release.clear()
    batch = [
        stanza("stalker@evil.example", "A", 10),
        stanza("friend@example.org", "B", 20),
        stanza("stalker@evil.example", "C", 30),
        stanza("stalker@evil.example", "D", 40),
    ]

    async def run() -> None:
        pendings, _ = await w.source.intake.start(batch)
        assert len(pendings) == 1 and len(pendings[0].items) == 4
        finishing = asyncio.create_task(w.source.intake.finish(pendings[0]))
        await asyncio.sleep(0.2)
        assert w.warned == [], "handled before the group was durable"
        assert "A" in w.source.intake._inflight, "marked durable before the group was"
        w.release.set()
        await asyncio.wait_for(finishing, 10)
        assert w.source.intake._inflight == {}

    asyncio.run(run())
    refs = ["xmpp:v:A", "xmpp:v:C", "xmpp:v:D"]
    assert w.archive_groups == [refs]  # one group commit for the three
    assert w.commits == [["archived"] * 3 + ["action"] * 3]  # and their action entries in it
    assert w.acted == []  # nothing is done to a message: no act to wait for
    assert [r.source_ref for r in w.vault.rows(kind="archived")] == refs
    actions = w.vault.rows(kind="action")
    assert [r.source_ref for r in actions] == refs
    assert all(json.loads(r.body)["done"].startswith("archived; not acknowledged") for r in actions)
    # The warning step once each, after the group, in order (the Warner keeps it once).
    assert w.warned == [(r, True) for r in refs]
    assert verify_vault(w.vault) == []


def test_a_subscription_request_is_acted_on_after_its_group_and_journaled_after_that(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(tmp_path, storage, monkeypatch)
    batch = [
        stanza("stalker@evil.example", "A", 10),
        subscription("stalker@evil.example", 20),
        stanza("stalker@evil.example", "C", 30),
    ]

    async def run() -> None:
        pendings, _ = await w.source.intake.start(batch)
        assert [len(p.items) for p in pendings] == [1, 1, 1]  # in arrival order, three runs
        for p in pendings:
            await asyncio.wait_for(w.source.intake.finish(p), 10)

    asyncio.run(run())
    (sub,) = [r for r in w.vault.rows(kind="archived") if "subscribe" in r.body]
    assert w.acted == [(sub.source_ref, True)]  # the one act, after its receipt
    # The messages' action entries in their archives' groups; the subscription's after its
    # act, alone (awaited last), however the committer grouped the three requests.
    *before, last = w.commits
    assert [kind for commit in before for kind in commit] == [
        "archived",
        "action",
        "archived",
        "archived",
        "action",
    ]
    assert last == ["action"]
    actions = {r.source_ref: json.loads(r.body) for r in w.vault.rows(kind="action")}
    assert actions[sub.source_ref]["done"].startswith("subscription request left pending")
    assert len(actions) == 3
    assert verify_vault(w.vault) == []


def test_a_failed_group_is_retried_whole_and_nothing_is_acted_on_before_it_succeeds(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "VAULT_RETRY_SECONDS", 0.01)
    w = Watched(tmp_path, storage, monkeypatch)
    w.fail = 2
    batch = [stanza("stalker@evil.example", s, n) for n, s in enumerate("XYZ")]

    async def run() -> None:
        pendings, _ = await w.source.intake.start(batch)
        await asyncio.wait_for(w.source.intake.finish(pendings[0]), 10)

    asyncio.run(run())
    refs = ["xmpp:v:X", "xmpp:v:Y", "xmpp:v:Z"]
    assert w.fail == 0
    assert w.archive_groups == [refs]  # the third try, whole
    assert w.warned == [(r, True) for r in refs]
    assert [r.source_ref for r in w.vault.rows(kind="archived")] == refs  # once each
    assert [r.source_ref for r in w.vault.rows(kind="action")] == refs
    assert verify_vault(w.vault) == []


def test_a_copy_in_the_same_batch_is_not_archived_twice(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(tmp_path, storage, monkeypatch)
    batch = [stanza("stalker@evil.example", "K", 10), stanza("stalker@evil.example", "K", 90)]

    async def run() -> None:
        pendings, _ = await w.source.intake.start(batch)
        for p in pendings:
            await asyncio.wait_for(w.source.intake.finish(p), 10)

    asyncio.run(run())
    assert [r.source_ref for r in w.vault.rows(kind="archived")] == ["xmpp:v:K"]
    assert len(w.vault.rows(kind="action")) == 1
