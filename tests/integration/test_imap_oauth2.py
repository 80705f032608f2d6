"""OAuth2 sign-in to IMAP for real (issue 30): Dovecot's oauth2 passdb asks an introspection
endpoint of a local authorization server made with authlib's server side, which also serves the
token endpoint guardmail renews its access tokens at. The daemon runs as a user would run it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from guardmail.oauth.store import TokenStore, tokens_from_response
from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_imap_dovecot import Mailbox, clean_mail, offender_mail
from tests.servers.dovecot import Dovecot, start_dovecot
from tests.servers.oauth_server import OAuthServer, start_oauth_server
from tests.servers.ports import free_ports

pytestmark = pytest.mark.integration

CLIENT_ID = "guardmail-test"


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = start_oauth_server()
    server.add_client(CLIENT_ID)
    yield server
    server.stop()


@pytest.fixture
def dovecot(oauth: OAuthServer) -> Iterator[Dovecot]:
    # The test's own client logs in with passwords; guardmail with tokens only.
    server = start_dovecot(
        {"alice": "secret", "bob": "secret"}, introspection_url=f"{oauth.url}/introspect"
    )
    yield server
    server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def account(name: str, server: Dovecot, oauth: OAuthServer, mechanism: str) -> str:
    return f"""\
    - name: {name}
      host: 127.0.0.1
      port: {server.imap_port}
      tls: none
      username: {name}
      auth: oauth2
      oauth2:
        token_endpoint: {oauth.url}/token
        device_authorization_endpoint: {oauth.url}/device_authorization
        client_id: {CLIENT_ID}
        scope: mail
        mechanism: {mechanism}
      poll_seconds: 0.5
"""


def signed_in(tmp: Path, name: str, oauth: OAuthServer) -> TokenStore:
    """The token file `guardmail login` would have left for ``name``."""
    store = TokenStore(tmp / "var" / "oauth" / f"imap-{name}.json")
    store.save(tokens_from_response(oauth.issue(name, CLIENT_ID), now=time.time()))
    return store


def write_config(tmp: Path, accounts: str, metrics_port: int = 0) -> Path:
    config = tmp / "guardmail.yaml"
    metrics = f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n" if metrics_port else ""
    config.write_text(
        f"""\
state_dir: {tmp}/var
{metrics}offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  imap:
{accounts}"""
    )
    return config


def quarantined(server: Dovecot, user: str) -> int:
    conn = server.imap(user)
    try:
        typ, data = conn.select('"Quarantine"', readonly=True)
        return int(data[0] or 0) if typ == "OK" else 0
    finally:
        conn.logout()


def append(server: Dovecot, user: str, raw: bytes) -> None:
    conn = server.imap(user)
    try:
        assert conn.append("INBOX", None, None, raw)[0] == "OK"
    finally:
        conn.logout()


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_oauth2_login_watches_and_quarantines(
    mechanism: str, dovecot: Dovecot, oauth: OAuthServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    store = signed_in(tmp_path, "alice", oauth)
    config = write_config(tmp_path, account("alice", dovecot, oauth, mechanism))
    Mailbox(dovecot).append(offender_mail(1))
    Mailbox(dovecot).append(clean_mail(1))
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: quarantined(dovecot, "alice") == 1, what="offender mail quarantined")
    assert f"user=<alice>, method={mechanism.upper()}" in dovecot.log()
    tokens = store.load()
    assert tokens is not None
    text = daemon.log_text()
    assert tokens.access_token not in text and tokens.refresh_token not in text
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_token_expiring_while_idle_is_renewed_and_no_mail_is_lost(
    dovecot: Dovecot, oauth: OAuthServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    store = signed_in(tmp_path, "alice", oauth)
    before = store.load()
    assert before is not None
    config = write_config(tmp_path, account("alice", dovecot, oauth, "xoauth2"))
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: "imap.idle" in daemon.log_text() or "imap.connected" in daemon.log_text())
    time.sleep(0.5)  # into IDLE
    # The token expires; the provider ends the session (as Outlook and Gmail do) and mail
    # keeps arriving while guardmail is away.
    oauth.expire_access_tokens()
    dovecot.doveadm("kick", "alice")
    append(dovecot, "alice", offender_mail(2))
    wait_for(lambda: quarantined(dovecot, "alice") == 1, what="mail of the gap quarantined")
    after = store.load()
    assert after is not None and after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token  # rotated, and kept
    assert oauth.state.requests["/token"] == 1
    assert daemon.log_text().count("imap.connected") >= 2
    assert "imap.oauth_refused" not in daemon.log_text()
    assert "event=oauth.renewed account=alice valid_for=3600" in daemon.log_text()


def test_a_refused_renewal_is_a_clear_error_and_the_other_account_runs_on(
    dovecot: Dovecot, oauth: OAuthServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    signed_in(tmp_path, "alice", oauth)
    signed_in(tmp_path, "bob", oauth)
    accounts = account("alice", dovecot, oauth, "xoauth2") + account(
        "bob", dovecot, oauth, "oauthbearer"
    )
    (metrics_port,) = free_ports(1)
    config = write_config(tmp_path, accounts, metrics_port)
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: daemon.log_text().count("imap.connected") >= 2, what="both connected")
    oauth.revoke("alice")  # the person revoked consent (or changed the password)
    dovecot.doveadm("kick", "alice")
    wait_for(lambda: "imap.oauth_refused" in daemon.log_text(), what="refusal logged")
    line = next(ln for ln in daemon.log_text().splitlines() if "imap.oauth_refused" in ln)
    assert "invalid_grant" in line and "guardmail login --account alice" in line
    append(dovecot, "bob", offender_mail(3))
    wait_for(lambda: quarantined(dovecot, "bob") == 1, what="bob still protected")

    def status_says_alice_down() -> bool:
        done = guardmail(config, "status", "--json")
        report = json.loads(done.stdout or b"{}")
        source = report.get("sources", {}).get("alice/INBOX", {})
        return source.get("state") == "down" and "invalid_grant" in source.get("detail", "")

    wait_for(status_says_alice_down, timeout=15, what="status shows the refusal")
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert 'guardmail_errors_total{event="imap.oauth_refused"}' in metrics
    assert 'guardmail_source_up{source="alice/INBOX"} 0.0' in metrics
    assert 'guardmail_source_up{source="bob/INBOX"} 1.0' in metrics
    assert daemon.proc.poll() is None
    assert os.path.exists(tmp_path / "var" / "oauth" / "imap-alice.json")
