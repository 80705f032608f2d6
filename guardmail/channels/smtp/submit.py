"""Submitting one message over SMTP, telling apart "certainly not sent" from "maybe sent".

The difference matters for the at-most-once warning: a refusal before or at DATA's reply is
certain (nothing was accepted), but a connection lost after the message was transmitted leaves
the outcome unknown, and guardmail must then never resend by itself.

No secret reaches an error: the server's reply to AUTH is never quoted (a server may echo what
it was sent), only its code and enhanced status code; a password with non-ASCII characters,
which smtplib can only send as ASCII, goes as AUTH PLAIN in UTF-8 (RFC 4616, RFC 6531).
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

__all__ = ["SubmitError", "submit"]

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
    if cfg.username is not None:
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


def submit(cfg: SmtpConfig, *, sender: str, recipient: str, raw: bytes) -> str:
    """Send ``raw`` unchanged from ``sender`` to ``recipient``; return the server's final reply."""
    envelope_from = parseaddr(sender)[1]
    envelope_to = parseaddr(recipient)[1] or recipient
    try:
        smtp = _connect(cfg)
    except (OSError, smtplib.SMTPException, SecretError) as exc:
        # Nothing was transmitted yet (a TLS failure included): certainly not sent. Nothing
        # secret was sent either: login failures are SubmitError already.
        raise SubmitError(f"cannot submit via {cfg.host}: {exc}", certain=True) from None
    try:
        code, reply = smtp.mail(envelope_from)
        if code != 250:
            text = reply.decode(errors="replace")
            raise SubmitError(f"sender refused: {code} {text}", certain=True)
        code, reply = smtp.rcpt(envelope_to)
        if code not in (250, 251):
            raise SubmitError(
                f"recipient {envelope_to} refused: {code} {reply.decode(errors='replace')}",
                certain=True,
            )
        try:
            code, reply = smtp.data(raw)
        except smtplib.SMTPDataError as exc:
            raise SubmitError(f"message refused: {exc}", certain=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            # The bytes may have reached the server before the connection broke.
            raise SubmitError(f"connection lost during DATA: {exc}", certain=False) from None
        return f"{code} {reply.decode(errors='replace')}"
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise SubmitError(f"connection lost before DATA: {exc}", certain=True) from None
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
