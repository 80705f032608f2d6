"""The warning through a submission server that takes OAuth2 only (issue 30): aiosmtpd with
XOAUTH2 and OAUTHBEARER checked against a local authlib authorization server, driven by the
real ``guardmail warn``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.oauth.store import TokenStore, tokens_from_response
from tests.integration.guardmail_proc import guardmail
from tests.servers.oauth_server import OAuthServer, start_oauth_server
from tests.servers.smtp_sink import OAuthRecorder, SmtpSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
CLIENT_ID = "guardmail-smtp"


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = start_oauth_server()
    server.add_client(CLIENT_ID)
    yield server
    server.stop()


@pytest.fixture
def sink(tmp_path: Path, oauth: OAuthServer) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "smtp-ca.pem", token_user=oauth.active_user) as server:
        yield server


def write_config(tmp: Path, sink: SmtpSink, oauth: OAuthServer, mechanism: str) -> Path:
    shutil.copy(REPO / "config" / "warning.txt.j2", tmp / "warning.txt.j2")
    config = tmp / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
warning:
  from: "Jane Victim <jane@example.org>"
  template_file: {tmp}/warning.txt.j2
  smtp:
    host: 127.0.0.1
    port: {sink.port}
    tls: starttls
    ca_file: {sink.ca_file}
    username: jane@example.org
    auth: oauth2
    oauth2:
      token_endpoint: {oauth.url}/token
      device_authorization_endpoint: {oauth.url}/device_authorization
      client_id: {CLIENT_ID}
      scope: mail
      mechanism: {mechanism}
"""
    )
    return config


def signed_in(tmp: Path, oauth: OAuthServer) -> TokenStore:
    store = TokenStore(tmp / "var" / "oauth" / "smtp-warning.json")
    store.save(tokens_from_response(oauth.issue("jane@example.org", CLIENT_ID), now=time.time()))
    return store


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_warning_is_sent_with_an_oauth2_token(
    mechanism: str, sink: SmtpSink, oauth: OAuthServer, tmp_path: Path
) -> None:
    store = signed_in(tmp_path, oauth)
    config = write_config(tmp_path, sink, oauth, mechanism)
    done = guardmail(config, "warn", "Example Offender", "--yes")
    assert done.returncode == 0, done.stderr
    assert [r.rcpt_tos for r in sink.received] == [["stalker@example.net"]]
    assert isinstance(sink.recorder, OAuthRecorder)
    assert sink.recorder.attempts == [mechanism.upper()]
    assert oauth.state.requests["/token"] == 0  # the stored token was still good
    tokens = store.load()
    assert tokens is not None and tokens.access_token.encode() not in done.stderr + done.stdout


def test_a_token_the_server_refuses_is_renewed_once_and_the_warning_goes(
    sink: SmtpSink, oauth: OAuthServer, tmp_path: Path
) -> None:
    signed_in(tmp_path, oauth)
    oauth.expire_access_tokens()  # expired at the server before the time guardmail knew of
    config = write_config(tmp_path, sink, oauth, "xoauth2")
    done = guardmail(config, "warn", "Example Offender", "--yes")
    assert done.returncode == 0, done.stderr
    assert len(sink.received) == 1
    assert isinstance(sink.recorder, OAuthRecorder)
    assert sink.recorder.attempts == ["XOAUTH2", "XOAUTH2"]
    assert oauth.state.requests["/token"] == 1


def test_a_refused_renewal_sends_nothing_and_says_to_sign_in_again(
    sink: SmtpSink, oauth: OAuthServer, tmp_path: Path
) -> None:
    signed_in(tmp_path, oauth)
    oauth.expire_access_tokens()
    oauth.revoke("jane@example.org")
    config = write_config(tmp_path, sink, oauth, "xoauth2")
    done = guardmail(config, "warn", "Example Offender", "--yes")
    assert done.returncode == 1
    assert b"invalid_grant" in done.stderr
    assert b"guardmail login --account warning" in done.stderr
    assert sink.received == []
    again = guardmail(config, "warn", "--status")
    assert b"Example Offender: not sent" in again.stdout or b"failed" in again.stdout
