"""The XMPP watcher's stanzas in flight in the vault's group commit (issue 28): a copy of a
stanza whose first copy is still being archived is not archived again, and the archive path
(``_handle``, after which the archive cursor moves) returns only once that first copy is
durable."""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardmail.channels.xmpp.client import Received, StreamContext
from guardmail.channels.xmpp.tee import Slice
from guardmail.channels.xmpp.watch import XmppSource
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Archive, Record, Vault
from guardmail.vault.verify import verify_vault

VICTIM = "victim@example.org"
RAW = (
    b"<message from='stalker@evil.example/r' to='victim@example.org' type='chat' id='m1'>"
    b"<body>hello</body><stanza-id xmlns='urn:xmpp:sid:0' id='SID1' by='victim@example.org'/>"
    b"</message>"
)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "guardmail.sqlite3")
    yield s
    s.close()


def received(offset: int) -> Received:
    xml = ET.fromstring(RAW.replace(b"<message ", b"<message xmlns='jabber:client' ", 1))
    return Received(
        xml=xml,
        piece=Slice(raw=RAW, offset=offset, tag=xml.tag),
        context=StreamContext(
            header=b"<stream:stream>", stream_id="s1", cert_sha256="", connection=1
        ),
        received_at=datetime.now(UTC),
    )


def test_an_archive_copy_waits_for_its_live_copy_in_flight_and_is_not_archived_twice(
    tmp_path: Path, storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = Vault(tmp_path / "vault", storage, "default")
    release = threading.Event()
    commit = vault.commit

    def held(entries: Sequence[Archive | Record], **kwargs: Any) -> Any:
        release.wait(10)  # the group stays in flight until the test lets it go
        return commit(entries, **kwargs)

    monkeypatch.setattr(vault, "commit", held)
    rules = RuleSet([OffenderRule(name="S", jids=("stalker@evil.example",), action=Action.BLOCK)])
    cfg = XmppSourceConfig.model_validate(
        {"name": "v", "jid": VICTIM, "host": "127.0.0.1", "password_file": tmp_path / "pw"}
    )
    source = XmppSource(
        cfg=cfg, tenant="default", pipeline=Pipeline(vault=vault, rules=rules), storage=storage
    )
    source.intake.sid_trusted = True

    async def run() -> None:
        (live,), _ = await source.intake.start([received(10)])  # queued, not durable
        copy = asyncio.create_task(source.intake.handle(received(99)))
        await asyncio.sleep(0.3)
        assert not copy.done(), "the copy returned before the first one was durable"
        release.set()
        await source.intake.finish(live)
        await asyncio.wait_for(copy, 10)

    asyncio.run(run())
    assert [r.source_ref for r in vault.rows(kind="archived")] == ["xmpp:v:SID1"]
    assert len(vault.rows(kind="action")) == 1
    assert verify_vault(vault) == []
