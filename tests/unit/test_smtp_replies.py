"""Every reply of the SMTP content filter carries an RFC 3463 enhanced status code (RFC 2034):
its own replies as written, aiosmtpd's and a next hop's through ``wire.enhanced``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import guardmail.channels.smtp.filter as filter_module
import guardmail.channels.smtp.wire as wire_module
from guardmail.channels.smtp.wire import enhanced

CODED = re.compile(r"^[245][0-9]{2}[ -][245]\.[0-9]{1,3}\.[0-9]{1,3}( |$)")

# aiosmtpd 1.4's own replies (aiosmtpd/smtp.py) and what the client sees instead.
AIOSMTPD = [
    ("250 OK", "250 2.0.0 OK"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
    ("500 Command line too long", "500 5.5.2 Command line too long"),
    ('500 Error: command "FOO" not recognized', '500 5.5.2 Error: command "FOO" not recognized'),
    ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
    ("501 Syntax: EHLO hostname", "501 5.5.4 Syntax: EHLO hostname"),
    ("502 Could not VRFY x", "502 5.5.1 Could not VRFY x"),
    ("503 Error: nested MAIL command", "503 5.5.1 Error: nested MAIL command"),
    ("503 Error: send HELO first", "503 5.5.1 Error: send HELO first"),
    (
        "252 Cannot VRFY user, but will accept message",
        "252 2.0.0 Cannot VRFY user, but will accept message",
    ),
    ("250 Syntax: EHLO hostname", "250 2.0.0 Syntax: EHLO hostname"),
    ("421 Timeout", "421 4.3.0 Timeout"),
    ("454 TLS not available", "454 4.7.0 TLS not available"),
    ("530 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first"),
    ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
    (
        "554 Command refused due to lack of security",
        "554 5.7.0 Command refused due to lack of security",
    ),
    (
        "555 MAIL FROM parameters not recognized or not implemented",
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented",
    ),
    # already coded: unchanged
    ("553 5.1.3 Error: malformed address", "553 5.1.3 Error: malformed address"),
    (
        "502 5.5.1 Too many unrecognized commands, goodbye.",
        "502 5.5.1 Too many unrecognized commands, goodbye.",
    ),
    ("421 4.7.0 MAIL sent too many times", "421 4.7.0 MAIL sent too many times"),
    # a next hop's reply passed on without a code; a code only: its class's generic one
    ("550 no such user", "550 5.0.0 no such user"),
    ("450", "450 4.0.0"),
    ("550-first line", "550-5.0.0 first line"),
    # not 2xx/4xx/5xx, or the greeting: as they are
    ("220 mx.example guardmail", "220 mx.example guardmail"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("334 ", "334 "),
    ("", ""),
    ("25", "25"),
    ("2500 x", "2500 x"),
]


@pytest.mark.parametrize(("reply", "sent"), AIOSMTPD)
def test_replies_without_an_enhanced_code_get_the_one_postfix_would_give(
    reply: str, sent: str
) -> None:
    assert enhanced(reply.encode()) == sent.encode()


def _replies(path: Path) -> list[str]:
    """The reply texts (literal, or an f-string's literal start) written in a module."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        if text is not None and re.match(r"^[245][0-9]{2} ", text):
            found.append(text)
    return found


def test_every_reply_the_filter_writes_itself_carries_an_enhanced_code() -> None:
    replies = [
        r for module in (filter_module, wire_module) for r in _replies(Path(str(module.__file__)))
    ]
    assert sorted(set(replies)) == [
        "250 2.0.0 OK",
        "250 2.0.0 Ok",
        "250 2.0.0 Ok: ",
        "250 2.0.0 Ok: archived; the next hop refused the other copies",
        "451 4.3.0 Evidence vault unavailable, try again later",
        "451 4.3.0 Internal error in the content filter, try again later",
        "451 4.3.0 Next hop unavailable, try again later",
        "501 5.5.4 ",  # a DSN parameter RFC 3461 does not allow (dsn.BadParameter's text)
        "501 5.5.4 Syntax: DATA",
        "501 5.5.4 Syntax: XFORWARD attribute=value...",
        "503 5.5.1 Error: XFORWARD not allowed during a mail transaction",
        "503 5.5.1 Error: need RCPT command",
        "550 5.7.1 Message refused by the recipient's protection",
    ]
    assert all(CODED.match(r) for r in replies)
