"""The warning's SMTP submission through a faulting proxy (tests/servers/faultproxy.py; issue 23,
"Resources and faults"): a STARTTLS handshake that stalls ends within the configured timeout with
a sentence that says so, counts as certainly not sent, and the next attempt sends the one warning
once the server behaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.guardmail_proc import guardmail
from tests.integration.test_warning_smtp import status, write_config
from tests.servers.faultproxy import Fault, FaultProxy
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CLIENT_HELLO = b"\x16\x03"  # a TLS record of type handshake: the client's first bytes of TLS


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "smtp-ca.pem") as server:
        yield server


def test_a_stalled_starttls_handshake_fails_certainly_within_the_timeout_and_a_retry_sends_once(
    sink: SmtpSink, tmp_path: Path
) -> None:
    with FaultProxy(sink.port) as proxy:
        config = write_config(tmp_path, sink)
        text = config.read_text().replace(f"port: {sink.port}", f"port: {proxy.port}")
        config.write_text(
            text.replace("    username: victim\n", "    username: victim\n    timeout_seconds: 2\n")
        )
        proxy.arm(Fault(action="stall", direction="up", pattern=CLIENT_HELLO))
        first = guardmail(config, "warn", "Example Offender", "--yes")
        assert proxy.struck == 1, first.stderr
        assert first.returncode == 1
        said = first.stderr.decode()
        assert f"TLS handshake with 127.0.0.1:{proxy.port}: no answer within 2s" in said, said
        assert "Traceback" not in said and sink.received == []
        assert "not sent: failed at" in status(config)  # certain: the person may retry
        second = guardmail(config, "warn", "Example Offender", "--yes", "--retry")
        assert second.returncode == 0, second.stderr
        assert len(sink.received) == 1  # the proxy passed traffic again
        third = guardmail(config, "warn", "Example Offender", "--yes", "--retry")
        assert third.returncode == 1 and b"sent at" in third.stderr
    assert len(sink.received) == 1
