"""RFC 3461 DSN parameters through guardmail as a real Postfix's after-queue content filter.

Postfix's first pass hands the filter NOTIFY, ORCPT, RET and ENVID only if the filter offers DSN;
otherwise it notifies "relayed" itself and the second pass never sees them. Proof at the end of
the chain: the delivery notice Postfix's final delivery sends the envelope sender says
"delivered", with the original envelope ID and the original recipient, case and all.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_smtp_filter_postfix import (  # noqa: F401 (fixtures)
    root,
    start,
    started,
)
from tests.servers.postfix import Guardmail, Postfix

pytestmark = pytest.mark.integration

CLEAN = b"From: User <user@example.test>\r\nSubject: with DSN\r\nMessage-ID: <d-1@t>\r\n\r\nHi.\r\n"


def send(postfix: Postfix, sender: str, raw: bytes, rcpt_options: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as s:
        s.ehlo("client.example.org")
        s.mail(sender, ["RET=HDRS", "ENVID=Env+2BId.314"])
        code, reply = s.rcpt("bob@example.test", rcpt_options)
        assert code == 250, reply
        code, reply = s.data(raw)
        assert code == 250, reply


def notices(postfix: Postfix, address: str) -> list[str]:
    return [m.decode(errors="replace") for m in postfix.delivered(address)]


def test_dsn_parameters_reach_the_final_delivery_after_re_injection(
    root: Path,  # noqa: F811
    started: list[Postfix | Guardmail],  # noqa: F811
) -> None:
    postfix, _ = start(root, started)
    send(
        postfix,
        "user@example.test",
        CLEAN,
        ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob+2BDSN@Example.test"],
    )
    wait_for(lambda: len(postfix.delivered("bob@example.test")) == 1, what="bob's copy")
    wait_for(lambda: len(notices(postfix, "user@example.test")) == 1, what="the DSN")
    (dsn,) = notices(postfix, "user@example.test")
    assert "Action: delivered" in dsn and "Action: relayed" not in dsn, dsn
    assert "Original-Envelope-Id: Env+Id.314" in dsn, dsn
    assert "Original-Recipient: rfc822;Bob+DSN@Example.test" in dsn, dsn
    assert "text/rfc822-headers" in dsn  # RET=HDRS: the headers only
    assert "Hi." not in dsn.split("text/rfc822-headers", 1)[1]


def test_the_filter_offers_dsn_and_refuses_what_rfc_3461_does_not_allow(
    root: Path,  # noqa: F811
    started: list[Postfix | Guardmail],  # noqa: F811
) -> None:
    postfix, _ = start(root, started)
    with smtplib.SMTP("127.0.0.1", postfix.filter_port, timeout=30) as s:
        s.ehlo("mx.example")
        assert "dsn" in s.esmtp_features
        assert s.mail("user@example.test", ["RET=ALL"])[0] == 501
        assert s.mail("user@example.test", ["ENVID=a=b"])[0] == 501
        assert s.mail("user@example.test", ["ENVID=x", "SIZE=10"])[0] == 250
        code, reply = s.rcpt("bob@example.test", ["NOTIFY=NEVER,SUCCESS"])
        assert (code, reply[:5]) == (501, b"5.5.4")
        assert s.rcpt("bob@example.test", ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@x"])[0] == 250
