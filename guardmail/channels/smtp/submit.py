"""Submitting one message over SMTP, telling apart "certainly not sent" from "maybe sent".

The difference matters for the at-most-once warning: a refusal before or at DATA's reply is
certain (nothing was accepted), but a connection lost after the message was transmitted leaves
the outcome unknown, and guardmail must then never resend by itself.
"""

from __future__ import annotations

import smtplib
from email.utils import parseaddr

from guardmail.channels.tls import client_context
from guardmail.config.secrets import read_secret
from guardmail.config.warning import SmtpConfig
from guardmail.errors import SecretError, SubmitError

__all__ = ["SubmitError", "submit"]


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
        smtp.login(cfg.username, password)
    return smtp


def submit(cfg: SmtpConfig, *, sender: str, recipient: str, raw: bytes) -> str:
    """Send ``raw`` unchanged from ``sender`` to ``recipient``; return the server's final reply."""
    envelope_from = parseaddr(sender)[1]
    envelope_to = parseaddr(recipient)[1] or recipient
    try:
        smtp = _connect(cfg)
    except (OSError, smtplib.SMTPException, SecretError) as exc:
        # Nothing was transmitted yet (a TLS failure included): certainly not sent.
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
