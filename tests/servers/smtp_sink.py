"""A submission server for tests: aiosmtpd with AUTH PLAIN/LOGIN (or, given ``token_user``,
XOAUTH2 and OAUTHBEARER only) that records what it received.

Runs aiosmtpd's Controller (its own loop in a thread): fine for a test peer. ``hold_data`` makes
DATA wait until released, to test a client killed mid-send. ``eight_bit=False`` leaves 8BITMIME
out of the EHLO answer (a server of the kind RFC 6152 still allows); ``smtputf8=True`` offers
SMTPUTF8 (aiosmtpd leaves it off by default).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.certs import Flaw, issue
from tests.servers.ports import free_ports


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message exactly as transmitted (dot-unstuffed)
    mail_options: list[str] = field(default_factory=list)  # e.g. BODY=8BITMIME, SMTPUTF8


@dataclass
class Recorder:
    username: str
    password: str
    received: list[Received] = field(default_factory=list)
    data_started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    hold_data: bool = False
    eight_bit: bool = True

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.eight_bit:
            return responses
        return [r for r in responses if r[4:].upper() != "8BITMIME"]

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.data_started.set()
        if self.hold_data:
            await asyncio.to_thread(self.release.wait, 60)
        content = envelope.original_content or b""
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=content,
                mail_options=list(envelope.mail_options),
            )
        )
        return "250 2.0.0 Ok: queued as TEST1"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (self.username, self.password)
        return AuthResult(success=ok)


@dataclass
class OAuthRecorder(Recorder):
    """AUTH XOAUTH2 and OAUTHBEARER only (as Outlook and Gmail), each token checked by
    ``token_user`` (the authorization server's introspection: the token's user, or None).
    A refused token gets the providers' 334 with a JSON error, then 535 (RFC 7628 3.2.3)."""

    token_user: Callable[[str], str | None] = lambda token: None
    attempts: list[str] = field(default_factory=list)

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        try:
            text = b64decode(args[1], validate=True).decode()
        except (IndexError, ValueError):
            await server.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
        fields = dict(f.split("=", 1) for f in text.split("\x01") if "=" in f)
        user = fields.get("user", "")
        if mechanism == "OAUTHBEARER":
            gs2 = text.split("\x01", 1)[0]
            user = gs2.split("a=", 1)[1].rstrip(",") if "a=" in gs2 else ""
        token = fields.get("auth", "").removeprefix("Bearer ")
        self.attempts.append(mechanism)
        if user and self.token_user(token) == user:
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)
        return AuthResult(success=False, handled=False)  # then aiosmtpd answers 535

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "OAUTHBEARER")


class SmtpSink:
    """STARTTLS required before AUTH, with a certificate from a CA made for the test."""

    def __init__(
        self,
        ca_file: Path,
        *,
        username: str = "victim",
        password: str = "secret",
        eight_bit: bool = True,
        smtputf8: bool = False,
        cert_flaw: Flaw = "none",
        token_user: Callable[[str], str | None] | None = None,
    ) -> None:
        self.recorder = (
            Recorder(username=username, password=password, eight_bit=eight_bit)
            if token_user is None
            else OAuthRecorder(username=username, password="", token_user=token_user)
        )
        (self.port,) = free_ports(1)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(ca_file))
        self.ca_file = ca_file
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issue(ca, "127.0.0.1", "localhost", flaw=cert_flaw).configure_cert(server_ctx)
        self._controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.recorder.authenticate,
            auth_exclude_mechanism=["PLAIN", "LOGIN"] if token_user else None,
            auth_required=True,
            tls_context=server_ctx,
            require_starttls=True,
            enable_SMTPUTF8=smtputf8,
        )

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.release.set()
        self._controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.recorder.received
