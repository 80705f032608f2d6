"""``asyncio.wait_for`` loses a cancellation in Python 3.11 when the awaited thing completes in
the same turn of the loop (it returns the result instead of raising): a source or watcher
cancelled at stop just as a file or a change arrives would then run on, and the daemon's stop
(or a test's) wait for ever. The daemon uses ``asyncio.timeout`` instead, which does not."""

import ast
import asyncio
from pathlib import Path

from guardmail.channels import maildir
from guardmail.channels.maildir import MaildirSource
from guardmail.core.rules import OffenderRule, RuleSet
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

PACKAGE = Path(__file__).resolve().parents[2] / "guardmail"


def test_the_daemon_never_calls_asyncio_wait_for() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "wait_for":
                if isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "asyncio":
                if any(alias.name == "wait_for" for alias in node.names):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert found == []


def test_a_maildir_source_cancelled_as_a_file_arrives_stops(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    root = tmp_path / "Maildir"
    maildir.ensure_maildir(root)
    maildir.ensure_maildir(root / ".Quarantine")
    source = MaildirSource(
        path=root,
        account="me",
        tenant="t",
        pipeline=Pipeline(
            vault=Vault(tmp_path / "vault", storage, "t"),
            rules=RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))]),
        ),
        rescan_seconds=3600,
    )

    async def scenario() -> bool:
        watching = asyncio.create_task(source.run())
        for _ in range(500):  # until it waits on its queue (the first scan done)
            await asyncio.sleep(0.01)
            if source._queue._getters:  # type: ignore[attr-defined]
                break
        # In one turn of the loop: the queue hands over a file, and the source is cancelled.
        source._queue.put_nowait(root / "new" / "absent")
        watching.cancel()
        done, _ = await asyncio.wait({watching}, timeout=10)
        if not done:
            watching.cancel()  # asyncio.wait_for's loss: cancel again so the test can end
            await asyncio.wait({watching}, timeout=10)
        return watching in done and watching.cancelled()

    try:
        assert asyncio.run(scenario())
    finally:
        storage.close()
