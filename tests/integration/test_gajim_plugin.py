"""plugins/gajim: the plugin's handler with Gajim's real modules (Debian's python3, gajim and
nbxmpp) reporting through guardmail's real control socket into the vault; and the pure parts
(stanza store, targets) in-process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from guardmail.config.settings import load_config
from guardmail.control.server import ControlServer, socket_path
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal

pytestmark = pytest.mark.integration

PLUGIN_ROOT = Path(__file__).resolve().parents[2] / "plugins" / "gajim"
SYSTEM_PYTHON = "/usr/bin/python3"


def _load_reporting() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gm_gajim_reporting", PLUGIN_ROOT / "guardmail_report" / "reporting.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


reporting = _load_reporting()


def _gajim_importable() -> bool:
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", "from gajim.common import app; import nbxmpp"],
            capture_output=True,
            timeout=60,
            check=False,
            cwd="/",
        )
    except OSError:
        return False
    return done.returncode == 0


def test_store_keeps_the_last_stanzas_per_contact_and_finds_one_message() -> None:
    store = reporting.StanzaStore()
    for n in range(reporting.KEPT_PER_CONTACT + 5):
        store.add("acct", "Stalker@Chat.example/phone", reporting.Kept(str(n), f"S{n}", f"<m{n}/>"))
    kept = store.find("acct", "stalker@chat.example")
    assert len(kept) == reporting.KEPT_PER_CONTACT and kept[0].message_id == "5"
    assert [k.xml for k in store.find("acct", "stalker@chat.example", message_id="7")] == ["<m7/>"]
    assert [k.xml for k in store.find("acct", "stalker@chat.example", stanza_id="S9")] == ["<m9/>"]
    assert store.find("other", "stalker@chat.example") == []


def test_targets_round_trip_and_bad_ones_are_refused() -> None:
    target = reporting.Target(account="victim", jid="a|b@chat.example", message_id="m1")
    assert reporting.Target.decode(target.encode()) == target
    with pytest.raises(reporting.ReportError, match="not a report target"):
        reporting.Target.decode("victim|stalker@chat.example")


def test_a_report_to_add_to_an_existing_offender_names_it_in_the_request(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    asked: list[dict[str, Any]] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as stream:
            asked.append(json.loads(stream.readline()))
            stream.write(b'{"ok": true, "result": {"offender": "Stalker (reported)"}}\n')

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        store = reporting.StanzaStore()
        store.add("victim", "alias@chat.example/x", reporting.Kept("m1", None, "<message/>"))
        target = reporting.Target(account="victim", jid="alias@chat.example", offender="Stalker")
        assert reporting.Target.decode(target.encode()) == target
        results = reporting.report(store, path, target, account_jid="victim@chat.example")
    finally:
        thread.join(10)
        server.close()
    assert asked[0]["offender"] == "Stalker" and asked[0]["channel"] == "xmpp"
    assert results == [{"offender": "Stalker (reported)"}]


def test_nothing_kept_is_a_clear_error(tmp_path: Path) -> None:
    target = reporting.Target(account="victim", jid="stalker@chat.example")
    with pytest.raises(reporting.ReportError, match="no message from stalker@chat.example"):
        reporting.report(reporting.StanzaStore(), tmp_path / "s", target, account_jid="v@x")


GAJIM_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from gajim.common import app  # Gajim's own import order
from gajim.plugins import GajimPlugin
import nbxmpp
import guardmail_report
from guardmail_report.plugin import remember
from guardmail_report.reporting import StanzaStore, Target, report

# Gajim's loader: the first name in dir(module) that is a GajimPlugin subclass.
loaded = None
for name in dir(guardmail_report):
    attr = getattr(guardmail_report, name)
    if issubclass(attr, GajimPlugin):
        loaded = attr.__name__
        break

store = StanzaStore()
m = nbxmpp.protocol.Message(
    to="victim@localhost", frm="stalker@localhost/phone", body="you cannot hide <3", typ="chat"
)
m.setID("m1")
m.addChild("stanza-id", namespace="urn:xmpp:sid:0", attrs={"by": "victim@localhost", "id": "S1"})
other = nbxmpp.protocol.Message(to="victim@localhost", frm="stalker@localhost/phone", body="x")
other.setID("m2")
own = nbxmpp.protocol.Message(to="x@localhost", frm="victim@localhost/gajim", body="mine")
kept = [remember(store, "victim", "victim@localhost", s) for s in (m, other, own)]
target = Target(account="victim", jid="stalker@localhost", message_id="m1")
results = report(store, Path(sys.argv[2]), target, account_jid="victim@localhost")
print(json.dumps({"loaded": loaded, "kept": kept, "results": results, "xml": str(m)}))
"""


@pytest.mark.skipif(not _gajim_importable(), reason="Debian's gajim is needed (system-packages.sh)")
def test_handler_with_gajim_modules_reports_through_the_control_socket(tmp_path: Path) -> None:
    config_path = tmp_path / "guardmail.yaml"
    config_path.write_text(
        f'state_dir: {tmp_path}/var\noffenders_files: ["{tmp_path}/offenders.d/*.yaml"]\n'
    )
    config = load_config(config_path)
    tenant = open_tenant(config.settings)
    path = socket_path(config.settings.state_dir)

    async def main() -> subprocess.CompletedProcess[str]:
        server = ControlServer(
            state_dir=config.settings.state_dir,
            config=lambda: config,
            tenant=tenant,
            clock=lambda: datetime(2026, 11, 25, tzinfo=UTC),
        )
        task = asyncio.create_task(server.run())
        await server.ready.wait()
        try:
            return await asyncio.to_thread(
                subprocess.run,
                [SYSTEM_PYTHON, "-c", GAJIM_SCRIPT, str(PLUGIN_ROOT), str(path)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd="/",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        done = asyncio.run(main())
        assert done.returncode == 0, done.stderr
        out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        (row,) = tenant.vault.rows(kind="archived")
        fields = journal.entry(row)
        raw = tenant.vault.blobs.get(row.sha256 or "")
    finally:
        tenant.close()
    assert out["loaded"] == "GuardmailReportPlugin"
    assert out["kept"] == [True, True, False]
    (result,) = out["results"]  # only the message asked for, not the other one kept
    assert result["offender"] == "stalker@localhost"
    assert result["rule_added"] == "jids: stalker@localhost (new offender 'stalker@localhost')"
    assert raw == out["xml"].encode()
    assert fields["channel"] == "xmpp"
    assert fields["meta"]["client"] == "gajim"
    assert fields["meta"]["fidelity"] == "as re-serialised by the client"
    assert fields["meta"]["stanza_id"] == "S1"
    assert fields["meta"]["via"] == "control socket"
