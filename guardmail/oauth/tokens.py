"""A valid access token for one account, refreshed before it expires.

Contracts:
- ``AccessTokens.get()`` returns a token valid for at least ``REFRESH_MARGIN`` seconds more
  (refreshing it with the standard refresh_token grant, RFC 6749 section 6, when not), or raises:
  ``TokenRefused`` when the authorization server refused the grant (``invalid_grant``: the
  password changed, consent was revoked, the refresh token expired) or no sign-in was ever
  made; nothing but ``guardmail login`` helps then, so callers back off long and say so.
  ``TokenUnavailable`` when the endpoint could not be reached or answered nonsense: retry.
- ``get(stale=TOKEN)`` refreshes even an unexpired token when the server refused ``TOKEN``
  (AUTHENTICATIONFAILED), unless another connection of the account already replaced it.
- Refreshes of one account are serialised (``TokenStore.locked``) and the new tokens stored
  before they are used: a provider that rotates refresh tokens never sees an old one twice.
- No token, and no client secret, appears in an error: the server's error code and a short
  description are quoted, the description only when it holds neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from guardmail.config.oauth import OAuth2Config
from guardmail.config.secrets import read_secret
from guardmail.errors import PeerError, SecretError, StateError
from guardmail.logs import event
from guardmail.oauth.store import Tokens, TokenStore, tokens_from_response

REFRESH_MARGIN = 300.0
HTTP_TIMEOUT = 30.0
_DESCRIPTION_LIMIT = 200


class TokenRefused(PeerError):
    """The authorization server refused this account's grant: sign in again."""


class TokenUnavailable(PeerError):
    """No fresh access token now (endpoint unreachable, a bad answer): retry later."""


def client_secret(cfg: OAuth2Config) -> str | None:
    if cfg.client_secret_file is None:
        return None
    return read_secret(file=cfg.client_secret_file)


def session(cfg: OAuth2Config, secret: str | None) -> OAuth2Session:
    """An authlib client for ``cfg``'s endpoints: a public client (``none``) without a secret."""
    return OAuth2Session(
        client_id=cfg.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post" if secret else "none",
    )


def oauth_error_text(exc: AuthlibBaseError, *secrets: str | None) -> str:
    """``invalid_grant: AADSTS50173 ...`` from an authlib error, never quoting a secret."""
    code = str(exc.error or "error")[:64]
    description = str(exc.description or "")[:_DESCRIPTION_LIMIT]
    if description and not any(s and s in description for s in secrets):
        return f"{code}: {description}"
    return code


class AccessTokens:
    """Access tokens of one account (``account`` names it in messages)."""

    def __init__(
        self,
        cfg: OAuth2Config,
        *,
        account: str,
        clock: Callable[[], float] = time.time,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        if cfg.token_file is None:
            raise ValueError("OAuth2Config.token_file is filled at load time")
        self.cfg = cfg
        self.account = account
        self.store = TokenStore(Path(cfg.token_file))
        self._clock = clock
        self._timeout = timeout

    def get(self, *, stale: str | None = None) -> str:
        """A usable access token (see the module's contracts)."""
        with self.store.locked():
            try:
                tokens = self.store.load()
            except StateError as exc:
                raise TokenRefused(str(exc)) from None
            if tokens is None:
                raise TokenRefused(
                    f"account {self.account!r} has not been signed in: run "
                    f"`guardmail login --account {self.account}`"
                )
            now = self._clock()
            fresh = tokens.expires_at - now > REFRESH_MARGIN
            if fresh and (stale is None or stale != tokens.access_token):
                return tokens.access_token
            renewed = self._refresh(tokens, now)
            self.store.save(renewed)
            event("oauth.renewed", account=self.account, valid_for=int(renewed.expires_at - now))
            return renewed.access_token

    def _refresh(self, tokens: Tokens, now: float) -> Tokens:
        try:
            secret = client_secret(self.cfg)
        except SecretError as exc:
            raise TokenUnavailable(str(exc)) from None
        where = self.cfg.token_endpoint
        try:
            with session(self.cfg, secret) as client:
                data: dict[str, Any] = dict(
                    client.refresh_token(
                        where,
                        refresh_token=tokens.refresh_token,
                        scope=self.cfg.scope,
                        timeout=self._timeout,
                    )
                )
        except AuthlibBaseError as exc:
            text = oauth_error_text(exc, tokens.refresh_token, tokens.access_token, secret)
            if exc.error in ("invalid_grant", "unauthorized_client", "invalid_client"):
                raise TokenRefused(
                    f"the authorization server refused to renew the sign-in of account "
                    f"{self.account!r} ({text}); run `guardmail login --account {self.account}`"
                ) from None
            raise TokenUnavailable(f"renewing the token at {where} failed ({text})") from None
        except requests.RequestException as exc:
            raise TokenUnavailable(
                f"renewing the token at {where} failed ({type(exc).__name__})"
            ) from None
        except ValueError:  # not JSON, no access_token
            raise TokenUnavailable(f"the token endpoint {where} gave no usable answer") from None
        try:
            return tokens_from_response(data, now=now, previous=tokens)
        except ValueError as exc:
            raise TokenUnavailable(f"{where}: {exc}") from None
