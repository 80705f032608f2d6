"""Opening an IMAP connection as the config says: TLS verified, password read at connect time.

Failures are sorted for the caller's backoff: ``refused`` (a wrong password, an untrusted
certificate: retrying fast would only lock the account) or not (network, server restart).

Contracts:
- ``connect`` raises nothing but ConnectFailure: whatever goes wrong while connecting or logging
  in stays with this account (its watcher backs off and retries), never stops the daemon.
- No secret reaches a reason: once the credentials are on their way, neither exception text
  nor the server's reply to the login is quoted (a server may echo the LOGIN line, and Python's
  codecs quote the character they could not encode); only the reply's response code is.
- IMAP LOGIN is ASCII in practice; credentials with other characters are sent with
  AUTHENTICATE PLAIN as UTF-8 (RFC 4616, RFC 6855), or refused with a sentence when the
  server does not offer it.
- ``auth: oauth2`` logs in with SASL XOAUTH2 or OAUTHBEARER and an access token from
  guardmail.oauth (refreshed before it expires); a refusal of the token (AUTHENTICATIONFAILED)
  makes one forced refresh and one more try on the same connection. A refused grant is
  ``imap.oauth_refused`` (refused: sign in again); the token never reaches a reason.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from functools import lru_cache
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from guardmail.channels.tls import client_context
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.config.secrets import read_secret
from guardmail.errors import ConnectFailure, SecretError
from guardmail.oauth.tokens import AccessTokens, TokenRefused, TokenUnavailable

# What a broken connection raises from imapclient: socket errors (OSError, incl. ssl.SSLError),
# imaplib's abort/error, imapclient's own.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    imaplib.IMAP4.error,
    IMAPClientError,
    EOFError,
)

_CLOSE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, AttributeError)

# A response code opening a tagged NO (RFC 5530: AUTHENTICATIONFAILED, UNAVAILABLE ...), an
# atom; imaplib and imapclient put "login failed: " and a bytes repr before the server's text.
_RESPONSE_CODE = re.compile(
    r"(?:[a-z]+ failed: )?(?:b['\"])?\s*\[([A-Za-z][A-Za-z0-9-]{0,39})[\] ]", re.IGNORECASE
)


@lru_cache(maxsize=64)
def _shared_context(ca_file: Path | None) -> ssl.SSLContext:
    return client_context(ca_file)


def tls_context(cfg: ImapSourceConfig) -> ssl.SSLContext:
    """One context per CA file, shared by every connection: a context costs ~0.8 MiB and
    ~15 ms to build, which at hundreds of accounts dominated memory and reconnect storms."""
    return _shared_context(cfg.ca_file)


def connect(cfg: ImapSourceConfig) -> IMAPClient:
    """A logged-in client, or ConnectFailure saying why (never the password)."""
    if cfg.auth == "oauth2":
        return _connect_oauth2(cfg)
    try:
        password = read_secret(file=cfg.password_file, command=cfg.password_command)
    except SecretError as exc:
        raise ConnectFailure(
            event="imap.secret_unreadable", reason=str(exc), refused=True
        ) from None
    except Exception as exc:  # never quoted: it may carry what the password command printed
        reason = f"the password could not be read ({type(exc).__name__})"
        raise ConnectFailure(event="imap.secret_unreadable", reason=reason, refused=True) from None
    client = _open(cfg)
    try:
        _login(client, cfg, password)
    except BaseException:
        close_quietly(client)
        raise
    return client


def _open(cfg: ImapSourceConfig) -> IMAPClient:
    """Connected (TLS as configured), not logged in: nothing secret was sent yet."""
    ctx = tls_context(cfg) if cfg.tls != "none" else None
    where = f"{cfg.host}:{cfg.effective_port}"
    client: IMAPClient | None = None
    try:
        client = IMAPClient(
            cfg.host,
            port=cfg.effective_port,
            ssl=cfg.tls == "implicit",
            ssl_context=ctx,
            timeout=cfg.timeout_seconds,
        )
        if cfg.tls == "starttls" and ctx is not None:
            client.starttls(ctx)
        client.normalise_times = False  # keep INTERNALDATE's own offset for the evidence
        return client
    except ssl.SSLCertVerificationError as exc:
        reason = f"certificate of {cfg.host} not trusted: {exc.verify_message}"
        failure = ConnectFailure(event="imap.tls_failed", reason=reason, refused=True)
    except TimeoutError as exc:  # a server (or a box in between) that accepts and goes silent
        step = "TLS handshake with" if "handshake" in str(exc) else "connecting to"
        reason = f"{step} {where}: no answer within {cfg.timeout_seconds:g}s"
        failure = ConnectFailure(event="imap.connect_failed", reason=reason, refused=False)
    except CONNECTION_ERRORS as exc:
        failure = ConnectFailure(
            event="imap.connect_failed", reason=f"{where}: {_text(exc)}", refused=False
        )
    except Exception as exc:  # a library bug or a reply it cannot parse: this account only
        reason = f"{where}: connecting failed ({type(exc).__name__})"
        failure = ConnectFailure(event="imap.connect_failed", reason=reason, refused=False)
    close_quietly(client)
    raise failure


def _login(client: IMAPClient, cfg: ImapSourceConfig, password: str) -> None:
    """Log in, or ConnectFailure whose reason quotes nothing the server or a codec said."""
    who = f"login as {cfg.username!r}"
    if not (cfg.username.isascii() and password.isascii()) and not _offers_plain(client):
        reason = (
            f"{who} not attempted: the password or user name has non-ASCII characters, which "
            f"IMAP LOGIN cannot carry, and {cfg.host} does not offer AUTHENTICATE PLAIN "
            "(UTF-8); use an ASCII password or a server with AUTH=PLAIN"
        )
        raise ConnectFailure(event="imap.login_failed", reason=reason, refused=True)
    try:
        if cfg.username.isascii() and password.isascii():
            client.login(cfg.username, password)
        else:
            client.plain_login(cfg.username, password)  # UTF-8, base64 on the wire
    except LoginError as exc:
        code = _response_code(exc, (cfg.username, password))
        reason = f"{who} refused: the server refused the login" + (f" [{code}]" if code else "")
        raise ConnectFailure(event="imap.login_failed", reason=reason, refused=True) from None
    except CONNECTION_ERRORS as exc:
        reason = f"{who}: the connection to {cfg.host} failed during login ({_kind(exc)})"
        raise ConnectFailure(event="imap.connect_failed", reason=reason, refused=False) from None
    except Exception as exc:  # e.g. UnicodeEncodeError, whose text shows a password character
        reason = f"{who} failed: the login could not be sent ({type(exc).__name__})"
        raise ConnectFailure(event="imap.login_failed", reason=reason, refused=True) from None


def _access_token(tokens: AccessTokens, stale: str | None = None) -> str:
    try:
        return tokens.get(stale=stale)
    except TokenRefused as exc:
        raise ConnectFailure(event="imap.oauth_refused", reason=str(exc), refused=True) from None
    except TokenUnavailable as exc:
        raise ConnectFailure(event="imap.oauth_failed", reason=str(exc), refused=False) from None


def _connect_oauth2(cfg: ImapSourceConfig) -> IMAPClient:
    assert cfg.oauth2 is not None  # the config's validator holds it
    tokens = AccessTokens(cfg.oauth2, account=cfg.name)
    token = _access_token(tokens)
    client = _open(cfg)
    try:
        try:
            _oauth2_login(client, cfg, token)
        except ConnectFailure as exc:
            if exc.event != "imap.login_failed":
                raise
            # Revoked or expired early at the server: renew once, try once more.
            token = _access_token(tokens, stale=token)
            _oauth2_login(client, cfg, token)
    except BaseException:
        close_quietly(client)
        raise
    return client


def _oauth2_login(client: IMAPClient, cfg: ImapSourceConfig, token: str) -> None:
    assert cfg.oauth2 is not None
    mechanism = cfg.oauth2.mechanism
    who = f"{mechanism.upper()} login as {cfg.username!r}"
    try:
        if mechanism == "oauthbearer":
            client.oauthbearer_login(cfg.username, token)
        else:
            client.oauth2_login(cfg.username, token, vendor=cfg.oauth2.vendor)
    except LoginError as exc:
        code = _response_code(exc, (cfg.username, token))
        reason = f"{who} refused: the server refused the token" + (f" [{code}]" if code else "")
        raise ConnectFailure(event="imap.login_failed", reason=reason, refused=True) from None
    except CONNECTION_ERRORS as exc:
        reason = f"{who}: the connection to {cfg.host} failed during login ({_kind(exc)})"
        raise ConnectFailure(event="imap.connect_failed", reason=reason, refused=False) from None
    except Exception as exc:
        reason = f"{who} failed: the login could not be sent ({type(exc).__name__})"
        raise ConnectFailure(event="imap.login_failed", reason=reason, refused=True) from None


def _offers_plain(client: IMAPClient) -> bool:
    try:
        return bool(client.has_capability("AUTH=PLAIN"))
    except Exception:  # no usable capability list: as if not offered
        return False


def _response_code(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The response code of a refusal (``AUTHENTICATIONFAILED``), unless it echoes a secret."""
    match = _RESPONSE_CODE.match(_text(exc))
    if match is None:
        return ""
    code = match.group(1)
    folded = code.casefold()
    if any(s and (s.casefold() in folded or folded in s.casefold()) for s in secrets):
        return "redacted"
    return code.upper()


def _kind(exc: BaseException) -> str:
    """An exception's kind without its text: the OS error name, or the class."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _text(exc: BaseException) -> str:
    args = exc.args
    if args and isinstance(args[0], bytes):
        return args[0].decode("utf-8", "replace")
    return str(exc) or type(exc).__name__


def close_quietly(client: IMAPClient | None) -> None:
    if client is None:
        return
    try:
        client.logout()
    except _CLOSE_ERRORS:
        try:
            client.shutdown()
        except _CLOSE_ERRORS:
            pass
