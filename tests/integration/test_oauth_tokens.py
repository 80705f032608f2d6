"""Access tokens renewed at a real (local, authlib-made) token endpoint: before they expire,
once for many connections, and with clear errors when the grant is refused (issue 30)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.config.oauth import OAuth2Config
from guardmail.oauth.store import TokenStore, tokens_from_response
from guardmail.oauth.tokens import REFRESH_MARGIN, AccessTokens, TokenRefused, TokenUnavailable
from tests.servers.oauth_server import OAuthServer, start_oauth_server
from tests.servers.ports import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = start_oauth_server()
    server.add_client("app")
    yield server
    server.stop()


def setup(
    tmp: Path, oauth: OAuthServer, token_endpoint: str = ""
) -> tuple[OAuth2Config, TokenStore]:
    cfg = OAuth2Config(
        token_endpoint=token_endpoint or f"{oauth.url}/token",
        device_authorization_endpoint=f"{oauth.url}/device_authorization",
        client_id="app",
        scope="mail",
        token_file=tmp / "oauth" / "imap-me.json",
    )
    store = TokenStore(tmp / "oauth" / "imap-me.json")
    store.save(tokens_from_response(oauth.issue("me", "app"), now=time.time()))
    return cfg, store


def test_a_fresh_token_is_used_as_is_and_one_near_expiry_is_renewed(
    oauth: OAuthServer, tmp_path: Path
) -> None:
    cfg, store = setup(tmp_path, oauth)
    first = AccessTokens(cfg, account="me").get()
    assert oauth.state.requests["/token"] == 0
    soon = time.time() + 3600 - REFRESH_MARGIN + 1  # within the margin of its expiry
    renewed = AccessTokens(cfg, account="me", clock=lambda: soon).get()
    assert renewed != first and oauth.active_user(renewed) == "me"
    assert oauth.state.requests["/token"] == 1
    kept = store.load()
    assert kept is not None and kept.access_token == renewed


def test_many_connections_refused_at_once_renew_once(oauth: OAuthServer, tmp_path: Path) -> None:
    cfg, _ = setup(tmp_path, oauth)
    stale = AccessTokens(cfg, account="me").get()
    got: list[str] = []

    def connection() -> None:
        got.append(AccessTokens(cfg, account="me").get(stale=stale))

    threads = [threading.Thread(target=connection) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 8 and len(set(got)) == 1 and stale not in got
    assert oauth.state.requests["/token"] == 1  # the rotated refresh token was used once


def test_a_revoked_grant_is_token_refused_saying_what_to_do(
    oauth: OAuthServer, tmp_path: Path
) -> None:
    cfg, store = setup(tmp_path, oauth)
    before = store.load()
    assert before is not None
    oauth.revoke("me")
    with pytest.raises(TokenRefused) as caught:
        AccessTokens(cfg, account="me").get(stale=before.access_token)
    text = str(caught.value)
    assert "invalid_grant" in text and "guardmail login --account me" in text
    assert before.refresh_token not in text
    assert store.load() == before  # nothing lost: a new login replaces it


def test_no_sign_in_yet_is_token_refused(oauth: OAuthServer, tmp_path: Path) -> None:
    cfg, store = setup(tmp_path, oauth)
    store.path.unlink()
    with pytest.raises(TokenRefused, match="has not been signed in"):
        AccessTokens(cfg, account="me").get()


def test_an_unreachable_token_endpoint_is_retryable(oauth: OAuthServer, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    cfg, store = setup(tmp_path, oauth, token_endpoint=f"http://127.0.0.1:{port}/token")
    tokens = store.load()
    assert tokens is not None
    with pytest.raises(TokenUnavailable, match="ConnectionError"):
        AccessTokens(cfg, account="me", timeout=5).get(stale=tokens.access_token)
    assert store.load() == tokens
