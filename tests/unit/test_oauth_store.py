"""The token file of one account and the SASL initial responses (issue 30)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from guardmail.errors import StateError
from guardmail.oauth.sasl import initial_response
from guardmail.oauth.store import Tokens, TokenStore, tokens_from_response


def test_tokens_are_stored_0600_in_a_0700_directory_and_read_back(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "oauth" / "imap-me.json")
    tokens = Tokens(access_token="AT", refresh_token="RT", expires_at=100.0, scope="mail")
    store.save(tokens)
    assert store.load() == tokens
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in store.path.parent.iterdir() if not p.name.endswith(".lock")] == [
        "imap-me.json"
    ]  # no temporary file left behind


def test_no_token_in_the_repr() -> None:
    tokens = Tokens(access_token="AT-secret", refresh_token="RT-secret", expires_at=1.0)
    assert "secret" not in repr(tokens) and "secret" not in str(tokens)


def test_a_missing_file_is_no_sign_in_and_a_foreign_one_is_a_state_error(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    assert store.load() is None
    store.path.write_text("{not json")
    with pytest.raises(StateError, match="run `guardmail login`"):
        store.load()


def test_a_refresh_answer_without_a_refresh_token_keeps_the_old_one() -> None:
    first = tokens_from_response(
        {"access_token": "a1", "refresh_token": "r1", "expires_in": 60}, now=1000.0
    )
    assert (first.expires_at, first.refresh_token) == (1060.0, "r1")
    second = tokens_from_response({"access_token": "a2"}, now=2000.0, previous=first)
    assert (second.access_token, second.refresh_token) == ("a2", "r1")
    with pytest.raises(ValueError, match="offline_access"):
        tokens_from_response({"access_token": "a"}, now=0.0)


def test_xoauth2_initial_response_is_google_s_format() -> None:
    raw = initial_response(
        "xoauth2", "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    )
    assert base64.b64encode(raw) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        b"QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )  # the example of Google's XOAUTH2 protocol page


def test_oauthbearer_initial_response_is_rfc_7628_s_with_escaped_user() -> None:
    raw = initial_response(
        "oauthbearer", "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    )
    bearer = b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert raw == b"n,a=user@example.com,\x01" + bearer + b"\x01\x01"  # RFC 7628 section 4.1
    assert initial_response("oauthbearer", "a,b=c", "t").startswith(b"n,a=a=2Cb=3Dc,\x01")


def test_control_characters_never_go_into_sasl() -> None:
    with pytest.raises(ValueError):
        initial_response("xoauth2", "me\x01auth=Bearer x", "t")
    with pytest.raises(ValueError):
        initial_response("oauthbearer", "me", "t\r\nA1 LOGOUT")


def test_the_store_is_not_world_readable_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        TokenStore(tmp_path / "d" / "t.json").save(
            Tokens(access_token="a", refresh_token="r", expires_at=0.0)
        )
    finally:
        os.umask(old)
    assert (tmp_path / "d" / "t.json").stat().st_mode & 0o777 == 0o600
