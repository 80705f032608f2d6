"""plugins/gajim in Debian's Gajim under Xvfb, with an account on the test Prosody: the plugin
loads and activates, keeps the offender's message, and its action (called over D-Bus, as a menu
item calls it) reports it through guardmail's control socket into the vault."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.control.server import ControlServer, socket_path
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.clients.gajim import GAJIM, GajimSession
from tests.conftest import wait_for
from tests.servers.prosody import Prosody, start_prosody

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        GAJIM is None or shutil.which("Xvfb") is None or shutil.which("dbus-daemon") is None,
        reason="gajim, xvfb and dbus are needed (scripts/system-packages.sh)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs Gajim as 'nobody' (needs root)"),
]

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "gajim" / "guardmail_report"
SCREENSHOT = os.environ.get("GUARDMAIL_GAJIM_SCREENSHOT")  # where to keep one, if set


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody({"victim": "secret", "stalker": "secret"}, starttls=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gm-gajim-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    if not os.environ.get("GUARDMAIL_KEEP_TMP"):
        shutil.rmtree(path, ignore_errors=True)


def test_plugin_loads_in_gajim_and_reports_over_the_control_socket(
    prosody: Prosody, root: Path
) -> None:
    # guardmail's state: the socket is 0660 for the group 'nogroup' ("0660 with a configured
    # group"), so Gajim running as nobody may use it; the test itself runs as root.
    guardmail_dir = root / "guardmail"
    guardmail_dir.mkdir()
    config_path = guardmail_dir / "guardmail.yaml"
    config_path.write_text(
        f'state_dir: {guardmail_dir}/var\noffenders_files: ["{guardmail_dir}/offenders.d/*.yaml"]\n'
    )
    config = load_config(config_path)
    tenant = open_tenant(config.settings)
    config.settings.state_dir.chmod(0o755)
    sock = socket_path(config.settings.state_dir)
    session = GajimSession(root / "gajim", display=60 + os.getpid() % 30)

    async def scenario() -> str:
        server = ControlServer(
            state_dir=config.settings.state_dir,
            config=lambda: config,
            tenant=tenant,
            group=grp.getgrnam("nogroup").gr_gid,
            clock=lambda: datetime.now(UTC),
        )
        task = asyncio.create_task(server.run())
        await server.ready.wait()
        try:
            return await asyncio.to_thread(drive)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def drive() -> str:
        session.start_display()
        session.seed(
            account="victim", host="localhost", password="secret", port=prosody.port, plugin=PLUGIN
        )
        session.start_gajim({"GUARDMAIL_SOCKET": str(sock)})
        wait_for(
            lambda: "guardmail_report activated" in session.log_text(),
            timeout=60,
            what="the plugin to activate",
        )
        wait_for(
            lambda: (
                "Authenticated as victim@localhost" in prosody.log()
                or "victim@localhost" in prosody.log()
            ),
            timeout=60,
            what="Gajim to sign in",
        )
        stalker = prosody.peer("stalker", resource="phone")
        try:
            stalker.send(
                "<message to='victim@localhost' type='chat' id='gm-1'>"
                "<body>you can't hide from me &lt;3</body></message>"
            )
            target = json.dumps({"account": "victim", "jid": "stalker@localhost"})
            seen: list[str] = []

            def reported() -> bool:
                called = session.activate("guardmail-report", target)
                seen.append(called.stderr)
                return "guardmail_report: kept as evidence" in session.log_text()

            # The message may still be on its way to Gajim: the action is retried until it is
            # kept (each call either reports it or logs "no message ... seen").
            wait_for(reported, timeout=60, what="the report from Gajim")
        finally:
            stalker.close()
        if SCREENSHOT:
            session.screenshot(Path(SCREENSHOT))
        return session.log_text()

    try:
        log = asyncio.run(scenario())
    finally:
        session.stop()
    try:
        (row,) = tenant.vault.rows(kind="archived")
        fields = journal.entry(row)
        raw = tenant.vault.blobs.get(row.sha256 or "")
    finally:
        tenant.close()
    assert "Found plugin guardmail_report" in log or "guardmail_report activated" in log
    assert fields["channel"] == "xmpp" and fields["offender"] == "stalker@localhost"
    assert fields["meta"]["client"] == "gajim"
    assert fields["meta"]["fidelity"] == "as re-serialised by the client"
    assert b"you can't hide from me &lt;3" in raw and b'from="stalker@localhost/phone"' in raw
    reported = (guardmail_dir / "offenders.d" / "reported.yaml").read_text()
    assert "- stalker@localhost" in reported
