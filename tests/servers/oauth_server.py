"""A local OAuth2 authorization server for tests, made with authlib's server side, on loopback.

It stands in for Microsoft's and Google's endpoints: the token endpoint (authorization_code
with PKCE, refresh_token with rotation, device_code), the authorization endpoint of the loopback
flow, the device authorization endpoint (RFC 8628) and a token introspection endpoint (RFC 7662)
for Dovecot's ``oauth2`` passdb. The "browser" steps (a person approving) are HTTP requests the
test makes: ``POST /approve`` with ``user_code`` and ``user`` for the device flow; ``GET
/authorize?...&user=NAME`` answers the loopback flow's redirect at once.

Test controls: ``expire_access_tokens()`` (every access token stops working, as at its expiry),
``revoke(user)`` (the person revoked consent: refresh tokens give invalid_grant).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    JsonRequest,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return "http://127.0.0.1/"

    def get_allowed_scope(self, scope: Any) -> Any:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 8252 7.3: a native app's loopback redirect may use any port.
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname == "127.0.0.1"

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == ("none" if self.secret is None else "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return True


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token(TokenMixin):
    access_token: str
    refresh_token: str | None
    scope: str
    user: str
    client_id: str
    expires_at: float
    revoked: bool = False

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id


@dataclass
class State:
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # by device_code
    approved: dict[str, str] = field(default_factory=dict)  # user_code -> user
    revoked_users: set[str] = field(default_factory=set)
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.RLock = field(default_factory=threading.RLock)


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, values: dict[str, str], headers: Any) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._values = values
        self.payload = BasicOAuth2Payload(values)

    @property
    def args(self) -> dict[str, str | None]:
        return dict(self._values)

    @property
    def form(self) -> dict[str, str]:
        return self._values


class Server(AuthorizationServer):
    def __init__(self, state: State, access_lifetime: int) -> None:
        super().__init__()
        self.state = state
        self.base_url = ""
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda *a, **k: secrets.token_urlsafe(24),
                lambda *a, **k: secrets.token_urlsafe(32),
                lambda client, grant_type: access_lifetime,
            ),
        )

    def query_client(self, client_id: str) -> Any:
        return self.state.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        assert request.client is not None
        with self.state.lock:
            self.state.tokens.append(
                Token(
                    access_token=token["access_token"],
                    refresh_token=token.get("refresh_token"),
                    scope=token.get("scope", ""),
                    user=str(request.user),
                    client_id=request.client.get_client_id(),
                    expires_at=time.time() + token["expires_in"],
                )
            )

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: _Request) -> JsonRequest:
        return JsonRequest(request.method, request.uri, request.headers)

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        assert request.payload is not None and request.client is not None
        data = request.payload.data
        self.server.state.codes[code] = Code(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=data.get("redirect_uri", ""),
            scope=data.get("scope", ""),
            user=str(request.user),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: ClientMixin) -> Any:
        found: Code | None = self.server.state.codes.get(code)
        return found if found is not None and found.client_id == client.get_client_id() else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.state.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation, as Microsoft does

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        state: State = self.server.state
        with state.lock:
            for token in state.tokens:
                if token.refresh_token == refresh_token and not token.revoked:
                    if token.user in state.revoked_users:
                        return None
                    return token
        return None

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: TokenMixin) -> None:
        assert isinstance(refresh_token, Token)
        refresh_token.revoked = True


class DeviceGrant(DeviceCodeGrant):
    def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
        data = self.server.state.devices.get(device_code)
        return DeviceCredentialDict(data) if data is not None else None

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        user = self.server.state.approved.get(user_code)
        return (user, True) if user is not None else None

    def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
        return False


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    INTERVAL = 1

    def get_verification_uri(self) -> str:
        return f"{self.server.base_url}/device"

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        self.server.state.devices[data["device_code"]] = {
            "client_id": client_id,
            "scope": scope,
            **data,
            "expires_at": time.time() + data["expires_in"],
        }


@dataclass
class OAuthServer:
    """The running server: ``url`` is its base (http://127.0.0.1:PORT)."""

    http: ThreadingHTTPServer
    thread: threading.Thread
    state: State

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_port}"

    def add_client(self, client_id: str, secret: str | None = None) -> None:
        self.state.clients[client_id] = Client(client_id, secret)

    def issue(self, user: str, client_id: str, scope: str = "mail") -> dict[str, Any]:
        """Tokens as a sign-in would give them (for tests that start already signed in)."""
        token = Token(
            access_token=secrets.token_urlsafe(24),
            refresh_token=secrets.token_urlsafe(32),
            scope=scope,
            user=user,
            client_id=client_id,
            expires_at=time.time() + 3600,
        )
        with self.state.lock:
            self.state.tokens.append(token)
        return {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_in": 3600,
            "scope": scope,
        }

    def expire_access_tokens(self) -> None:
        with self.state.lock:
            for token in self.state.tokens:
                token.expires_at = min(token.expires_at, time.time() - 1)

    def revoke(self, user: str) -> None:
        with self.state.lock:
            self.state.revoked_users.add(user)

    def active_user(self, access_token: str) -> str | None:
        with self.state.lock:
            for token in self.state.tokens:
                if token.access_token == access_token:
                    live = not token.is_expired() and token.user not in self.state.revoked_users
                    return token.user if live else None
        return None

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=5)


def _handler(server: Server, owner: list[OAuthServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _values(self) -> dict[str, str]:
            query = dict(parse_qsl(urlsplit(self.path).query))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            return {**query, **dict(parse_qsl(body))}

        def _send(self, status: int, body: Any, headers: Any = ()) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            sent = {k.lower() for k, _ in headers}
            for key, value in headers:
                self.send_header(key, value)
            if "content-type" not in sent:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path
            values = self._values()
            state = server.state
            state.requests[path] += 1
            request = _Request(method, owner[0].url + self.path, values, dict(self.headers))
            if path == "/token":
                self._send(*server.create_token_response(request))
            elif path == "/device_authorization":
                answer: Any = server.create_endpoint_response(  # type: ignore[no-untyped-call]
                    "device_authorization", request
                )
                self._send(*answer)
            elif path == "/authorize":
                # The person is signed in as ?user= and consents at once.
                person = values.get("user", "")
                grant = server.get_consent_grant(  # type: ignore[no-untyped-call]
                    request, end_user=person
                )
                granted: Any = server.create_authorization_response(
                    request, grant_user=person, grant=grant
                )
                self._send(*granted)
            elif path == "/approve":
                with state.lock:
                    state.approved[values["user_code"]] = values["user"]
                self._send(200, {"approved": True})
            elif path == "/introspect":
                user = owner[0].active_user(values.get("token", ""))
                self._send(200, {"active": True, "username": user} if user else {"active": False})
            else:
                self._send(404, {"error": "not_found"})

    return Handler


def start_oauth_server(*, access_lifetime: int = 3600) -> OAuthServer:
    state = State()
    server = Server(state, access_lifetime)
    server.register_grant(CodeGrant, [CodeChallenge(required=True)])
    server.register_grant(RefreshGrant)
    server.register_grant(DeviceGrant)
    server.register_endpoint(DeviceEndpoint)  # type: ignore[arg-type]
    owner: list[OAuthServer] = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server, owner))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    running = OAuthServer(http=http, thread=thread, state=state)
    owner.append(running)
    server.base_url = running.url
    thread.start()
    return running
