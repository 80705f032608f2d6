"""One XMPP session of the watcher: logging in (failures sorted for the backoff), requests with a
deadline, and a teardown that leaves nothing of slixmpp's running.

slixmpp retries failed connections by itself with its own delays and does not reconnect after an
established session drops; guardmail owns both, so every connection attempt here is one try.

    ConnectFailure  (errors.py) connecting or logging in failed: ``event`` names it, ``refused``
                    (wrong password, untrusted certificate, no STARTTLS) asks for the slow backoff
    Lost            an established session ended (no answer in time, connection closed)
    Refused         the server answered a request with an error (``condition``)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq
from slixmpp.xmlstream.xmlstream import NotConnectedError

from guardmail.channels.xmpp.client import WatchClient
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.errors import ConnectFailure, PeerError


class Lost(PeerError):
    """An established session ended (the reason is the message)."""


class Refused(PeerError):
    """The server answered a request with an error (``condition``)."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


def target(cfg: XmppSourceConfig) -> str:
    return f"{cfg.host or cfg.domain}:{cfg.effective_port}"


def connect_failure(cfg: XmppSourceConfig, error: BaseException | str) -> ConnectFailure:
    """A failed connection attempt, named and sorted for the backoff."""
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = f"certificate of {cfg.domain} not trusted ({target(cfg)}): {error.verify_message}"
        return ConnectFailure(event="xmpp.tls_failed", reason=reason, refused=True)
    if isinstance(error, ssl.SSLError):
        reason = f"TLS with {target(cfg)} failed: {error.reason or error}"
        return ConnectFailure(event="xmpp.tls_failed", reason=reason, refused=True)
    text = str(error) or type(error).__name__
    return ConnectFailure(
        event="xmpp.connect_failed", reason=f"{target(cfg)}: {text}", refused=False
    )


def stalled(cfg: XmppSourceConfig, stage: str) -> str:
    """Why a login attempt timed out, by how far it got (``WatchClient.stage``)."""
    where, seconds = target(cfg), f"{cfg.timeout_seconds:g}s"
    if stage == "tls":
        return f"TLS handshake with {where} (STARTTLS): no answer within {seconds}"
    if stage == "connect" and cfg.tls == "implicit":
        return f"connecting to {where} (TCP connect or TLS handshake): no answer within {seconds}"
    if stage == "connect":
        return f"connecting to {where}: no answer within {seconds}"
    return f"no session with {where} within {seconds}: the stream opened, the login did not end"


async def login(
    client: WatchClient, cfg: XmppSourceConfig, *, on_roster_push: Callable[[Iq], None]
) -> None:
    """Connect once and wait for the session (bound resource); ConnectFailure says why not."""
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    last_error: list[BaseException | str] = []

    def fail(failure: ConnectFailure) -> None:
        if not started.done():
            started.set_exception(failure)

    def on_session_start(_: Any) -> None:
        if not started.done():
            started.set_result(None)

    def on_all_attempts_failed(_: Any) -> None:
        # slixmpp is about to wait and try again by itself: stop it, guardmail owns the backoff.
        client.cancel_connection_attempt()
        fail(connect_failure(cfg, last_error[-1] if last_error else "connection failed"))

    def on_login_refused(_: Any) -> None:
        reason = f"login as {cfg.jid!r} refused (wrong password, or no such account)"
        fail(ConnectFailure(event="xmpp.login_failed", reason=reason, refused=True))

    def on_invalid_chain(exc: Any) -> None:
        reason = f"certificate of {cfg.domain} not trusted ({target(cfg)}): {exc}"
        fail(ConnectFailure(event="xmpp.tls_failed", reason=reason, refused=True))

    def on_disconnected(why: Any) -> None:
        if client.tls_missing:
            reason = "the server offers no STARTTLS (tls: starttls); nothing was sent"
            fail(ConnectFailure(event="xmpp.tls_failed", reason=reason, refused=True))
        elif isinstance(why, ssl.SSLError):  # the STARTTLS handshake failed
            fail(connect_failure(cfg, why))
        else:
            reason = "connection closed during login" + (f": {why}" if why else "")
            fail(ConnectFailure(event="xmpp.connect_failed", reason=reason, refused=False))

    handlers: dict[str, Callable[[Any], None]] = {
        "session_start": on_session_start,
        "failed_all_auth": on_login_refused,
        "connection_failed": last_error.append,
        "reconnect_delay": on_all_attempts_failed,
        "ssl_invalid_chain": on_invalid_chain,
        "disconnected": on_disconnected,
        "roster_update": on_roster_push,
    }
    for name, handler in handlers.items():
        client.add_event_handler(name, handler)
    if cfg.host:
        client.connect(cfg.host, cfg.effective_port)
    else:
        client.connect()  # DNS SRV records of the JID's domain
    try:
        async with asyncio.timeout(cfg.timeout_seconds):
            await started
    except TimeoutError:
        reason = stalled(cfg, client.stage)
        raise ConnectFailure(event="xmpp.connect_failed", reason=reason, refused=False) from None
    finally:
        client.del_event_handler("disconnected", on_disconnected)


async def request(client: WatchClient, iq: Iq, *, seconds: float) -> Iq:
    """Send ``iq`` and wait for its answer; none within ``seconds`` aborts the connection."""
    try:
        answer: Iq = await iq.send(timeout=seconds)  # type: ignore[no-untyped-call]
    except IqTimeout:
        client.abort()
        raise Lost(f"no answer within {seconds:g}s") from None
    except IqError as exc:
        raise Refused(str(exc.condition), str(exc.text or "")) from None
    return answer


def teardown(client: ClientXMPP) -> None:
    """Close the stream and drop everything slixmpp scheduled or runs for this client."""
    client.cancel_connection_attempt()
    for name in list(client.scheduled_events):
        client.cancel_schedule(name)
    transport = client.transport
    if transport is not None:
        try:
            client.send_raw(client.stream_footer)
        except NotConnectedError:
            pass
        transport.close()
    task = client._run_out_filters  # slixmpp's send loop: it would wait forever otherwise
    if task is not None:
        task.cancel()
