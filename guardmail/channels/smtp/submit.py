"""Submitting one message over SMTP, telling apart "certainly not sent" from "maybe sent".

The difference matters for the at-most-once warning: any failure before the server answers DATA
with 354, and a refusal of the message after it, is certain (nothing was accepted), but a
connection lost while or after the message was transmitted leaves the outcome unknown, and
guardmail must then never resend by itself.

No secret reaches an error: the server's reply to AUTH is never quoted (a server may echo what
it was sent), only its code and enhanced status code; a password with non-ASCII characters,
which smtplib can only send as ASCII, goes as AUTH PLAIN in UTF-8 (RFC 4616, RFC 6531).
With ``auth: oauth2`` the login is AUTH XOAUTH2 or OAUTHBEARER with an access token from
guardmail.oauth; a refused token is renewed once and tried once more (a refused renewal is a
certain failure that says to sign in again); the token never reaches an error.
"""

from __future__ import annotations

import base64
import re
import smtplib
from email.utils import parseaddr

from guardmail.channels.tls import client_context
from guardmail.config.secrets import read_secret
from guardmail.config.warning import SmtpConfig
from guardmail.errors import SecretError, SubmitError
from guardmail.oauth.sasl import initial_response
from guardmail.oauth.tokens import AccessTokens, TokenRefused, TokenUnavailable

__all__ = ["SubmitError", "submit", "submit_message"]

_EOL = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")

_ENHANCED = re.compile(rb"\s*([245]\.\d{1,3}\.\d{1,3})\b")


def _connect(cfg: SmtpConfig) -> smtplib.SMTP:
    ctx = client_context(cfg.ca_file)
    if cfg.tls == "implicit":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            cfg.host, cfg.effective_port, timeout=cfg.timeout_seconds, context=ctx
        )
    else:
        smtp = smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout_seconds)
    smtp.ehlo()
    if cfg.tls == "starttls":
        smtp.starttls(context=ctx)
        smtp.ehlo()
    if cfg.auth == "oauth2":
        try:
            _login_oauth2(smtp, cfg)
        except BaseException:
            smtp.close()
            raise
    elif cfg.username is not None:
        password = read_secret(file=cfg.password_file, command=cfg.password_command)
        try:
            _login(smtp, cfg.host, cfg.username, password)
        except BaseException:
            smtp.close()
            raise
    return smtp


def _login(smtp: smtplib.SMTP, host: str, user: str, password: str) -> None:
    """Log in, or SubmitError (certain) that quotes nothing the server or a codec said."""
    who = f"cannot submit via {host}: login as {user!r}"
    try:
        if user.isascii() and password.isascii():
            smtp.login(user, password)
        else:
            _login_utf8(smtp, host, user, password)
    except SubmitError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        reply = exc.smtp_error if isinstance(exc.smtp_error, bytes) else exc.smtp_error.encode()
        status = _ENHANCED.match(reply)
        code = f"{exc.smtp_code}" + (f" {status.group(1).decode()}" if status else "")
        reason = f"{who} refused: the server refused the login ({code})"
        raise SubmitError(reason, certain=True) from None
    except smtplib.SMTPNotSupportedError:
        raise SubmitError(f"{who}: the server offers no AUTH", certain=True) from None
    except (OSError, smtplib.SMTPException) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SubmitError(f"{who} failed during login ({why})", certain=True) from None
    except Exception as exc:  # e.g. UnicodeEncodeError, whose text shows a password character
        why = type(exc).__name__
        raise SubmitError(f"{who}: the login could not be sent ({why})", certain=True) from None


class _Responder:
    """smtplib's authobject: the first call sends the token; a 334 after it carries the
    server's error (a JSON document), answered with an empty line to end it (RFC 7628 3.2.3)."""

    def __init__(self, first: bytes) -> None:
        self._first: str | None = first.decode()

    def __call__(self, challenge: bytes | None = None) -> str:
        first, self._first = self._first, None
        return first if first is not None else ""


def _token(tokens: AccessTokens, host: str, stale: str | None = None) -> str:
    try:
        return tokens.get(stale=stale)
    except (TokenRefused, TokenUnavailable) as exc:
        raise SubmitError(f"cannot submit via {host}: {exc}", certain=True) from None


def _login_oauth2(smtp: smtplib.SMTP, cfg: SmtpConfig) -> None:
    """AUTH XOAUTH2 / OAUTHBEARER; renew the token once if the server refuses it."""
    assert cfg.oauth2 is not None and cfg.username is not None  # the validator holds it
    oauth2, user = cfg.oauth2, cfg.username
    tokens = AccessTokens(oauth2, account="warning")
    token = _token(tokens, cfg.host)
    who = f"cannot submit via {cfg.host}: {oauth2.mechanism.upper()} login as {user!r}"
    for attempt in (1, 2):
        respond = _Responder(initial_response(oauth2.mechanism, user, token, vendor=oauth2.vendor))
        try:
            smtp.ehlo_or_helo_if_needed()
            smtp.auth(oauth2.mechanism.upper(), respond, initial_response_ok=True)
            return
        except smtplib.SMTPAuthenticationError as exc:
            if attempt == 1:
                token = _token(tokens, cfg.host, stale=token)
                continue
            reply = exc.smtp_error if isinstance(exc.smtp_error, bytes) else b""
            status = _ENHANCED.match(reply)
            code = f"{exc.smtp_code}" + (f" {status.group(1).decode()}" if status else "")
            raise SubmitError(
                f"{who} refused: the server refused the token ({code})", certain=True
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise SubmitError(f"{who}: the server offers no AUTH", certain=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SubmitError(f"{who} failed during login ({why})", certain=True) from None


def _login_utf8(smtp: smtplib.SMTP, host: str, user: str, password: str) -> None:
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "PLAIN" not in offered:
        raise SubmitError(
            f"cannot submit via {host}: the password or user name has non-ASCII characters, "
            "which only AUTH PLAIN can carry (as UTF-8), and the server does not offer it",
            certain=True,
        )
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, reply)


def _is_ascii(data: str | bytes) -> bool:
    return (data.encode("utf-8") if isinstance(data, str) else data).isascii()


def _dot_stuffed(raw: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, the ending ``.`` line."""
    data = _EOL.sub(b"\r\n", raw)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


def submit(
    cfg: SmtpConfig, *, sender: str, recipient: str, raw: bytes, raw_7bit: bytes | None = None
) -> str:
    """Send ``raw`` from ``sender`` to ``recipient``; return the server's final reply.

    See ``submit_message``; this is its reply alone.
    """
    return submit_message(cfg, sender=sender, recipient=recipient, raw=raw, raw_7bit=raw_7bit)[0]


def submit_message(
    cfg: SmtpConfig, *, sender: str, recipient: str, raw: bytes, raw_7bit: bytes | None = None
) -> tuple[str, bytes]:
    """Send one message unchanged; return the server's final reply and the bytes sent.

    ``raw`` goes with ``BODY=8BITMIME`` when it holds 8-bit bytes and the server offers
    8BITMIME; otherwise ``raw_7bit`` (the same message with its body quoted-printable) goes,
    and with neither a 7-bit form nor 8BITMIME the message is refused before MAIL FROM.
    Non-ASCII envelope addresses go with ``SMTPUTF8`` when offered and are refused before
    MAIL FROM otherwise. Every failure before the server answers DATA with 354 is certain
    (``SubmitError.certain``): nothing of the message was transmitted.
    """
    envelope_from = parseaddr(sender)[1]
    envelope_to = parseaddr(recipient)[1] or recipient
    try:
        smtp = _connect(cfg)
    except TimeoutError as exc:  # a server (or a box in between) that accepts and goes silent
        where = f"{cfg.host}:{cfg.effective_port}"
        step = "TLS handshake with" if "handshake" in str(exc) else "talking to"
        reason = f"cannot submit via {cfg.host}: {step} {where}: no answer within"
        raise SubmitError(f"{reason} {cfg.timeout_seconds:g}s", certain=True) from None
    except (OSError, smtplib.SMTPException, SecretError) as exc:
        # Nothing was transmitted yet (a TLS failure included): certainly not sent. Nothing
        # secret was sent either: login failures are SubmitError already.
        raise SubmitError(f"cannot submit via {cfg.host}: {exc}", certain=True) from None
    try:
        return _transaction(smtp, cfg, envelope_from, envelope_to, raw, raw_7bit)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _transaction(
    smtp: smtplib.SMTP,
    cfg: SmtpConfig,
    envelope_from: str,
    envelope_to: str,
    raw: bytes,
    raw_7bit: bytes | None,
) -> tuple[str, bytes]:
    options: list[str] = []
    if not (_is_ascii(envelope_from) and _is_ascii(envelope_to)):
        if not smtp.has_extn("smtputf8"):
            raise SubmitError(
                f"{cfg.host} does not offer SMTPUTF8, which the non-ASCII address in "
                f"{envelope_from} -> {envelope_to} needs; nothing was sent",
                certain=True,
            )
        options.append("SMTPUTF8")
    data = raw
    if not _is_ascii(raw):
        if smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        elif raw_7bit is not None and _is_ascii(raw_7bit):
            data = raw_7bit
        else:
            raise SubmitError(
                f"{cfg.host} does not offer 8BITMIME and the message has 8-bit content; "
                "nothing was sent",
                certain=True,
            )
    try:
        code, reply = smtp.mail(envelope_from, options)
        if code != 250:
            text = reply.decode(errors="replace")
            raise SubmitError(f"sender refused: {code} {text}", certain=True)
        code, reply = smtp.rcpt(envelope_to)
        if code not in (250, 251):
            raise SubmitError(
                f"recipient {envelope_to} refused: {code} {reply.decode(errors='replace')}",
                certain=True,
            )
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise SubmitError(
                f"message refused: {code} {reply.decode(errors='replace')}", certain=True
            )
    except SubmitError:
        raise
    except Exception as exc:  # noqa: BLE001 - before DATA's 354 nothing of the message left
        raise SubmitError(f"not sent, failed before DATA: {exc!r}", certain=True) from None
    try:
        smtp.send(_dot_stuffed(data))
        code, reply = smtp.getreply()
    except (OSError, smtplib.SMTPException) as exc:
        # The bytes may have reached the server before the connection broke.
        raise SubmitError(f"connection lost during DATA: {exc}", certain=False) from None
    if code != 250:
        raise SubmitError(f"message refused: {code} {reply.decode(errors='replace')}", certain=True)
    return f"{code} {reply.decode(errors='replace')}", data
