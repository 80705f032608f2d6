"""The one-time sign-in of ``guardmail login``: two standard OAuth2 flows for installed apps.

- ``device_flow``: the device authorization grant (RFC 8628). guardmail shows a URL and a code;
  the person opens the URL on any device (a phone will do), types the code and consents, while
  guardmail polls the token endpoint. Microsoft and Google both offer it.
- ``loopback_flow``: the authorization code grant with PKCE (RFC 7636) and a loopback redirect
  (RFC 8252 7.3, ``http://127.0.0.1:PORT/``). guardmail shows the URL to open in a browser on
  this machine (or through an SSH tunnel to PORT) and waits for the redirect.

Both are bounded in time and return ``Tokens``; failures are ``LoginFailed`` sentences. No
token is shown or logged: ``show`` gets only what the person must see.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from guardmail.config.oauth import OAuth2Config
from guardmail.errors import PeerError
from guardmail.oauth.store import Tokens, tokens_from_response
from guardmail.oauth.tokens import HTTP_TIMEOUT, client_secret, oauth_error_text

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOOPBACK_TIMEOUT = 600.0
MAX_DEVICE_WAIT = 1800.0


class LoginFailed(PeerError):
    """The sign-in did not complete (refused, expired, or the server answered nonsense)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DevicePrompt:
    verification_uri: str
    user_code: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _tokens(data: dict[str, Any], now: float) -> Tokens:
    try:
        return tokens_from_response(data, now=now)
    except ValueError as exc:
        raise LoginFailed(str(exc)) from None


def device_flow(
    cfg: OAuth2Config,
    *,
    show: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    timeout: float = HTTP_TIMEOUT,
) -> Tokens:
    """Run the device authorization grant to the end (RFC 8628 3.4-3.5)."""
    if cfg.device_authorization_endpoint is None:
        raise LoginFailed("no device_authorization_endpoint is configured for this account")
    form = {"client_id": cfg.client_id, "scope": cfg.scope}
    secret = client_secret(cfg)
    if secret:
        form["client_secret"] = secret
    try:
        answer = requests.post(cfg.device_authorization_endpoint, data=form, timeout=timeout)
        data = answer.json()
        device_code = str(data["device_code"])
        prompt = DevicePrompt(
            verification_uri=str(data.get("verification_uri") or data["verification_url"]),
            user_code=str(data["user_code"]),
            verification_uri_complete=data.get("verification_uri_complete"),
            expires_in=float(data.get("expires_in", 900)),
            interval=float(data.get("interval", 5)),
        )
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        where = cfg.device_authorization_endpoint
        raise LoginFailed(f"{where} gave no device code ({type(exc).__name__})") from None
    show(f"Open {prompt.verification_uri} and enter the code {prompt.user_code}")
    if prompt.verification_uri_complete:
        show(f"(or open {prompt.verification_uri_complete})")
    deadline = clock() + min(prompt.expires_in, MAX_DEVICE_WAIT)
    interval = max(prompt.interval, 1.0)
    with OAuth2Session(
        client_id=cfg.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post" if secret else "none",
    ) as client:
        while clock() < deadline:
            sleep(interval)
            try:
                token = client.fetch_token(
                    cfg.token_endpoint,
                    grant_type=DEVICE_GRANT,
                    device_code=device_code,
                    timeout=timeout,
                )
                return _tokens(dict(token), clock())
            except AuthlibBaseError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += 5  # RFC 8628 3.5
                    continue
                text = oauth_error_text(exc, secret, device_code)
                raise LoginFailed(f"the sign-in was not completed ({text})") from None
            except (requests.RequestException, ValueError) as exc:
                raise LoginFailed(
                    f"{cfg.token_endpoint} could not be asked ({type(exc).__name__})"
                ) from None
    raise LoginFailed("the code expired before the sign-in was completed; run login again")


class _Redirect(BaseHTTPRequestHandler):
    """Takes the one redirect of the loopback flow."""

    server: _RedirectServer

    def log_message(self, format: str, *args: Any) -> None:  # nothing to stderr
        pass

    def do_GET(self) -> None:
        query = dict(parse_qsl(urlsplit(self.path).query))
        if "code" not in query and "error" not in query:
            self.send_response(404)
            self.end_headers()
            return
        self.server.answer = query
        body = b"guardmail: the sign-in is complete; you can close this page.\n"
        if "error" in query:
            body = b"guardmail: the sign-in was refused; see the terminal.\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.done.set()


class _RedirectServer(HTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Redirect)
        self.answer: dict[str, str] = {}
        self.done = threading.Event()


def loopback_flow(
    cfg: OAuth2Config,
    *,
    show: Callable[[str], None],
    port: int = 0,
    wait: float = LOOPBACK_TIMEOUT,
    clock: Callable[[], float] = time.time,
    timeout: float = HTTP_TIMEOUT,
) -> Tokens:
    """Run the authorization code grant with PKCE and a loopback redirect to the end."""
    if cfg.authorization_endpoint is None:
        raise LoginFailed("no authorization_endpoint is configured for this account")
    secret = client_secret(cfg)
    try:
        listener = _RedirectServer(port)
    except OSError as exc:
        raise LoginFailed(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    redirect_uri = f"http://127.0.0.1:{listener.server_port}/"
    serving = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2})
    serving.start()
    try:
        with OAuth2Session(
            client_id=cfg.client_id,
            client_secret=secret,
            scope=cfg.scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post" if secret else "none",
        ) as client:
            verifier = secrets.token_urlsafe(48)
            state = secrets.token_urlsafe(16)
            url, _ = client.create_authorization_url(
                cfg.authorization_endpoint, state=state, code_verifier=verifier
            )
            show(f"Open this address in a browser on this machine and sign in:\n{url}")
            show(f"(waiting for the answer at {redirect_uri})")
            if not listener.done.wait(wait):
                raise LoginFailed(f"no answer at {redirect_uri} within {wait:g}s")
            answer = listener.answer
            if answer.get("state") != state:
                raise LoginFailed("the answer's state does not match this sign-in; try again")
            if "error" in answer:
                raise LoginFailed(f"the sign-in was refused ({answer['error'][:64]})")
            try:
                token = client.fetch_token(
                    cfg.token_endpoint,
                    code=answer["code"],
                    code_verifier=verifier,
                    timeout=timeout,
                )
            except AuthlibBaseError as exc:
                text = oauth_error_text(exc, secret, answer["code"], verifier)
                raise LoginFailed(f"the code was not exchanged for tokens ({text})") from None
            except (requests.RequestException, ValueError) as exc:
                raise LoginFailed(
                    f"{cfg.token_endpoint} could not be asked ({type(exc).__name__})"
                ) from None
            return _tokens(dict(token), clock())
    finally:
        listener.shutdown()
        listener.server_close()
        serving.join(timeout=5)
