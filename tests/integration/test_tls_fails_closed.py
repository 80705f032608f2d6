"""TLS is verified by default on every channel that logs in: a certificate from an unknown CA,
one that has expired and one for another host name each fail closed (no credentials sent, no
mail read or sent) with a sentence that says which (issue 23, "no one let in")."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from tests.conftest import wait_for
from tests.integration import test_imap_dovecot as imap
from tests.integration import test_warning_smtp as smtp
from tests.integration import test_xmpp_prosody as xmpp
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.certs import Flaw
from tests.servers.dovecot import start_dovecot
from tests.servers.prosody import start_prosody
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CASES: list[tuple[str, Flaw]] = [
    ("wrong_ca", "none"),
    ("expired", "expired"),
    ("wrong_name", "wrong_name"),
]
# What the sentence must say for each flaw (OpenSSL's verify messages, quoted by guardmail).
SAYS = {
    "wrong_ca": "unable to get local issuer certificate",
    "expired": "certificate has expired",
    "wrong_name": "mismatch, certificate is not valid for",
}


@pytest.mark.parametrize(("case", "flaw"), CASES)
def test_imap_refuses_a_bad_certificate_saying_which(tmp_path: Path, case: str, flaw: Flaw) -> None:
    server = start_dovecot({"alice": "secret"}, tls=True, cert_flaw=flaw)
    try:
        (tmp_path / "guardmail.yaml").write_text(
            imap.config_text(tmp_path, server, ca=case != "wrong_ca")
        )
        daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
        try:
            wait_for(lambda: "imap.tls_failed" in daemon.log_text(), what="TLS failure logged")
            text = daemon.log_text()
            assert "certificate of 127.0.0.1 not trusted" in text and SAYS[case] in text
            assert daemon.proc.poll() is None
        finally:
            daemon.stop()
        assert "Login: user=<alice>" not in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize(("case", "flaw"), CASES)
def test_xmpp_refuses_a_bad_certificate_saying_which(tmp_path: Path, case: str, flaw: Flaw) -> None:
    server = start_prosody(xmpp.USERS, cert_flaw=flaw, log_level="debug")
    try:
        (tmp_path / "guardmail.yaml").write_text(
            xmpp.config_text(tmp_path, server, ca=case != "wrong_ca")
        )
        daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
        try:
            wait_for(lambda: "xmpp.tls_failed" in daemon.log_text(), what="TLS failure logged")
            text = daemon.log_text()
            assert "certificate of localhost not trusted" in text and SAYS[case] in text
            assert daemon.proc.poll() is None
        finally:
            daemon.stop()
        assert "Authenticated" not in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize(("case", "flaw"), CASES)
def test_warning_submission_refuses_a_bad_certificate_saying_which(
    tmp_path: Path, case: str, flaw: Flaw
) -> None:
    with SmtpSink(tmp_path / "smtp-ca.pem", cert_flaw=flaw) as sink:
        config = smtp.write_config(tmp_path, sink)
        if case == "wrong_ca":
            trustme.CA().cert_pem.write_to_path(str(tmp_path / "smtp-ca.pem"))
        done = guardmail(config, "warn", "Example Offender", "--yes")
        assert done.returncode != 0
        assert SAYS[case] in done.stderr.decode(), done.stderr
        assert sink.received == []
    status = guardmail(config, "warn", "--status")
    assert b"failed" in status.stdout, status.stdout  # certainly not sent: no resend is owed
