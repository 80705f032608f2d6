"""What a login that timed out says, by how far the connection got (WatchClient.stage)."""

from pathlib import Path

import pytest

from guardmail.channels.xmpp.session import stalled
from guardmail.config.xmpp_source import XmppSourceConfig


def cfg(tls: str) -> XmppSourceConfig:
    return XmppSourceConfig.model_validate(
        {
            "name": "v",
            "jid": "victim@example.org",
            "host": "127.0.0.1",
            "port": 5999,
            "tls": tls,
            "password_file": Path("/nonexistent"),
            "timeout_seconds": 2.5,
        }
    )


@pytest.mark.parametrize(
    ("tls", "stage", "says"),
    [
        ("implicit", "connect", "connecting to 127.0.0.1:5999 (TCP connect or TLS handshake)"),
        ("starttls", "connect", "connecting to 127.0.0.1:5999: no answer"),
        ("starttls", "tls", "TLS handshake with 127.0.0.1:5999 (STARTTLS): no answer"),
        ("starttls", "stream", "no session with 127.0.0.1:5999 within 2.5s: the stream opened"),
    ],
)
def test_a_timed_out_login_says_where_it_stalled(tls: str, stage: str, says: str) -> None:
    reason = stalled(cfg(tls), stage)
    assert says in reason and "2.5s" in reason
