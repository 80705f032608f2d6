"""An offender's envelope with bytes that are not UTF-8 (found by the journal's property tests,
issue 23): aiosmtpd hands ``MAIL FROM:<ex\\xff@...>`` over as a lone surrogate, which has no
UTF-8 form. The journal used to fail to hash the entry, so the filter answered 451 for ever and
the message was never archived; it is archived now, with the envelope as received.

Reachable behind a real Postfix: 3.7 refuses such a MAIL FROM ("bad UTF-8 syntax") while
``smtputf8_enable`` is on, and with ``smtputf8_enable = no`` hands it to the filter as it is
(tried by hand, 3.7.11)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.integration.test_smtp_filter_loopback import OFFENDER, Rig, run

pytestmark = pytest.mark.integration


def raw_session(port: int, commands: list[bytes]) -> list[bytes]:
    """One SMTP session written byte for byte; the reply line to each command."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in commands:
            sock.sendall(command)
            line = reader.readline()
            while line[3:4] == b"-":
                line = reader.readline()
            replies.append(line)
    return replies


def test_an_offender_envelope_with_8bit_bytes_is_archived_not_deferred(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        commands = [
            b"EHLO mx.gmtest.test\r\n",
            b"XFORWARD IDENT=QID8 SOURCE=REMOTE\r\n",
            b"MAIL FROM:<ex\xff@bad.example>\r\n",
            b"RCPT TO:<alice@example.test>\r\n",
            b"DATA\r\n",
            OFFENDER.replace(b"\r\n.", b"\r\n..") + b".\r\n",
            b"QUIT\r\n",
        ]
        replies = await asyncio.to_thread(raw_session, r.port, commands)
        assert replies[5].startswith(b"250"), replies
        (entry,) = r.evidence("alice")
        assert entry["meta"]["mail_from"] == "ex\udcff@bad.example"  # the byte, recoverable
        assert r.hop.to("alice@example.test") == []
        (kept,) = r.hop.to("alice-quarantine@example.test")
        assert kept.data == OFFENDER

    run(tmp_path, scenario)
