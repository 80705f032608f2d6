"""The real ``guardmail import`` command: killed mid-import (SIGKILL) and run again, each item is
archived exactly once; a history database made by Gajim's own schema code is imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from guardmail.vault.verify import verify_vault
from tests.unit.test_import import write_mbox

pytestmark = pytest.mark.integration

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Ex
    addresses: [stalker@example.net]
    jids: [stalker@chat.example]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(root=tmp_path))
    return path


def run_import(
    config: Path, *args: str, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GUARDMAIL_FAULT", None)
    if fault:
        env["GUARDMAIL_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(config), "import", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def archived_bodies(config: Path) -> list[dict[str, object]]:
    tenant = open_tenant(load_config(config).settings)
    try:
        assert verify_vault(tenant.vault) == []
        return [journal.entry(r) for r in tenant.vault.rows(kind="archived")]
    finally:
        tenant.close()


@pytest.mark.parametrize("fault", ["import.committed:2", "vault.blob:2"])
def test_an_import_killed_and_run_again_archives_each_item_once(
    tmp_path: Path, config: Path, fault: str
) -> None:
    box = tmp_path / "old.mbox"
    write_mbox(box, 1500, every=10)  # 150 from the offender, in batches of 500 items
    killed = run_import(config, "mbox", str(box), fault=fault)
    assert killed.returncode == -signal.SIGKILL
    partial = archived_bodies(config)
    assert len(partial) == 100 if fault.startswith("import") else len(partial) == 50
    done = run_import(config, "mbox", str(box))
    assert done.returncode == 0, done.stderr
    assert "import: 1,500 items" in done.stderr  # progress on stderr
    bodies = archived_bodies(config)
    offsets = Counter(b["meta"]["mbox_offset"] for b in bodies)  # type: ignore[index]
    assert len(offsets) == 150 and set(offsets.values()) == {1}
    again = run_import(config, "mbox", str(box), "--quiet")
    assert again.returncode == 0 and again.stderr == ""
    assert "(0 archived, 150 already)" in again.stdout
    assert len(archived_bodies(config)) == 150


def test_a_missing_file_is_a_usage_error_naming_it(tmp_path: Path, config: Path) -> None:
    done = run_import(config, "mbox", str(tmp_path / "nope.mbox"))
    assert done.returncode == 2
    assert "nope.mbox: cannot be read" in done.stderr


GAJIM_DB = """
import sqlite3, sys
from gajim.common.storage.archive import ARCHIVE_SQL_STATEMENT
db = sqlite3.connect(sys.argv[1])
db.executescript(ARCHIVE_SQL_STATEMENT)
db.commit()
"""


def gajim_database(path: Path) -> None:
    """A history database made by Gajim's own schema code (Debian's gajim, run by its Python),
    then filled as Gajim fills it: jids, then log lines (KindConstant kinds)."""
    subprocess.run(
        ["/usr/bin/python3", "-c", GAJIM_DB, str(path)],
        check=True,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent)},
    )
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        jids = ["victim@chat.example", "stalker@chat.example", "friend@chat.example", "r@muc.x"]
        for n, jid in enumerate(jids, start=1):
            db.execute("INSERT INTO jids (jid_id, jid, type) VALUES (?, ?, ?)", (n, jid, n == 4))
        rows = [
            (2, None, None, 4, "you cannot hide", None),  # from the stalker
            (2, None, None, 6, "leave me alone", None),  # the person's answer
            (3, None, None, 4, "lunch?", None),  # a friend
            (2, None, None, 0, None, None),  # a status line: not a message
            (4, "mask", "stalker@chat.example/phone", 2, "hi everyone", None),  # in a room
            (4, "pal", None, 2, "hello", None),
        ]
        for n, (jid_id, nick, real, kind, text, extra) in enumerate(rows):
            db.execute(
                "INSERT INTO logs (account_id, jid_id, contact_name, real_jid, time, kind, "
                "message, additional_data, stanza_id) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (jid_id, nick, real, 1_700_000_000 + n, kind, text, extra, f"s{n}"),
            )
    db.close()


def test_a_gajim_history_database_is_imported(tmp_path: Path, config: Path) -> None:
    db = tmp_path / "logs.db"
    gajim_database(db)
    before = db.read_bytes()
    done = run_import(config, "gajim", str(db))
    assert done.returncode == 0, done.stderr
    bodies = archived_bodies(config)
    assert [(b["meta"]["direction"], b["subject"]) for b in bodies] == [  # type: ignore[index]
        ("received", "you cannot hide"),
        ("sent", "leave me alone"),
        ("groupchat", "hi everyone"),
    ]
    tenant = open_tenant(load_config(config).settings)
    try:
        first = tenant.vault.rows(kind="archived")[0]
        row = json.loads(tenant.vault.blobs.get(first.sha256 or ""))
    finally:
        tenant.close()
    assert row["conversation_jid"] == "stalker@chat.example"
    assert row["row"]["message"] == "you cannot hide" and row["row"]["stanza_id"] == "s0"
    assert all(b["channel"] == "xmpp" and b["offender"] == "Ex" for b in bodies)
    assert db.read_bytes() == before
    again = run_import(config, "gajim", str(db))
    assert "(0 archived, 3 already)" in again.stdout
