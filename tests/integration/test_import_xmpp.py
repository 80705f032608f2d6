"""``guardmail import xmpp``: an account's server archive on a real Prosody (MAM), from a date,
the offender's messages archived with the bytes the server delivered, once however often run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.integration.test_import_cli import run_import
from tests.integration.test_xmpp_prosody import USERS, VICTIM, config_text, peer
from tests.servers.prosody import Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody(USERS)
    yield server
    server.stop()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    opened: list[Peer] = []
    yield opened
    for p in opened:
        p.close()


def test_the_server_archive_is_imported_once(
    prosody: Prosody, tmp_path: Path, peers: list[Peer]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, prosody))
    stalker = peer(prosody, peers, "stalker")
    friend = peer(prosody, peers, "friend")
    for n in range(3):
        stalker.send(f"<message to='{VICTIM}' type='chat' id='s{n}'><body>old {n}</body></message>")
    friend.send(f"<message to='{VICTIM}' type='chat' id='f1'><body>hi</body></message>")
    stalker.iq("<ping xmlns='urn:xmpp:ping'/>", kind="get", to=VICTIM.split("@")[1])

    done = run_import(config, "xmpp", "victim", "--since", "2020-01-01")
    assert done.returncode == 0, done.stderr
    assert "4 items (3 archived, 0 already)" in done.stdout
    tenant = open_tenant(load_config(config).settings)
    try:
        rows = tenant.vault.rows(kind="archived")
        bodies = [journal.entry(r) for r in rows]
        raws = [tenant.vault.blobs.get(r.sha256 or "") for r in rows]
    finally:
        tenant.close()
    assert [b["message_id"] for b in bodies] == ["s0", "s1", "s2"]
    assert all(b["offender"] == "Stalker" and b["channel"] == "xmpp" for b in bodies)
    assert all(b"urn:xmpp:mam:2" in raw and b"id='s" in raw.replace(b'"', b"'") for raw in raws)
    assert bodies[0]["imported"]["note"].startswith("imported from xmpp victim (server archive)")

    again = run_import(config, "xmpp", "victim", "--since", "2020-01-01")
    assert "(0 archived, 3 already)" in again.stdout
    future = run_import(config, "xmpp", "victim", "--since", "2100-01-01")
    assert "0 items" in future.stdout


def test_import_xmpp_needs_since(tmp_path: Path, prosody: Prosody) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, prosody))
    done = run_import(config, "xmpp", "victim")
    assert done.returncode == 2 and "needs --since" in done.stderr
