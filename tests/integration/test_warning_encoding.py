"""The warning's bytes on the wire: 8BITMIME or quoted-printable, SMTPUTF8 or a certain refusal,
a greeting only by the name the person chose, and the sent warning shown as evidence."""

import email
import email.policy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.guardmail_proc import guardmail
from tests.integration.test_warning_smtp import status, write_config
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CLOSING = "Mit freundlichen Grüßen, Jane"


def non_ascii_template(tmp: Path) -> None:
    template = tmp / "warning.txt.j2"
    template.write_text(template.read_text() + f"\n{CLOSING}\n", encoding="utf-8")


def send(config: Path) -> None:
    done = guardmail(config, "warn", "Example Offender", "--yes")
    assert done.returncode == 0, done.stderr


def body(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    part = message.get_body()
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def plain_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """A server offering neither 8BITMIME nor SMTPUTF8."""
    with SmtpSink(tmp_path / "smtp-ca.pem", eight_bit=False) as server:
        yield server


def test_a_non_ascii_warning_goes_with_body_8bitmime_where_the_server_offers_it(
    tmp_path: Path,
) -> None:
    with SmtpSink(tmp_path / "smtp-ca.pem") as sink:
        config = write_config(tmp_path, sink)
        non_ascii_template(tmp_path)
        send(config)
    (got,) = sink.received
    assert "BODY=8BITMIME" in got.mail_options
    assert b"Content-Transfer-Encoding: 8bit" in got.data
    assert CLOSING in body(got.data)


def test_a_non_ascii_warning_is_quoted_printable_for_a_server_without_8bitmime_and_kept_as_sent(
    plain_sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, plain_sink)
    non_ascii_template(tmp_path)
    send(config)
    (got,) = plain_sink.received
    assert got.data.isascii()
    assert "BODY=8BITMIME" not in got.mail_options
    assert b"Content-Transfer-Encoding: quoted-printable" in got.data
    assert CLOSING in body(got.data)
    # The vault lists the warning, and shows exactly the bytes the server took.
    listed = guardmail(config, "evidence", "list", "--json", "--kind", "warning")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["kind"] == "warning" and entry["to"] == "stalker@example.net"
    shown = guardmail(config, "evidence", "show", str(entry["seq"]))
    assert shown.returncode == 0 and shown.stdout == got.data


def test_a_non_ascii_recipient_without_smtputf8_is_refused_before_sending_and_recorded_failed(
    plain_sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, plain_sink)
    config.write_text(config.read_text().replace("stalker@example.net", "jürgen@exämple.net"))
    done = guardmail(config, "warn", "Example Offender", "--yes")
    assert done.returncode == 1
    assert b"SMTPUTF8" in done.stderr and b"Traceback" not in done.stderr
    assert plain_sink.received == []
    assert "Example Offender: not sent: failed at" in status(config)
    assert "SMTPUTF8" in status(config)


def test_a_non_ascii_recipient_goes_with_smtputf8_where_the_server_offers_it(
    tmp_path: Path,
) -> None:
    with SmtpSink(tmp_path / "smtp-ca.pem", smtputf8=True) as sink:
        config = write_config(tmp_path, sink)
        config.write_text(config.read_text().replace("stalker@example.net", "jürgen@exämple.net"))
        send(config)
    (got,) = sink.received
    assert "SMTPUTF8" in got.mail_options
    assert got.rcpt_tos == ["jürgen@exämple.net"]
    assert "To: jürgen@exämple.net\r\n".encode() in got.data


def test_the_warning_greets_by_the_chosen_name_and_never_by_the_label(tmp_path: Path) -> None:
    with SmtpSink(tmp_path / "smtp-ca.pem") as sink:
        config = write_config(tmp_path, sink)
        unnamed = guardmail(config, "warn", "Example Offender", "--dry-run")
        assert unnamed.returncode == 0, unnamed.stderr
        assert b"Example Offender" not in unnamed.stdout
        assert unnamed.stdout.split(b"\r\n\r\n", 1)[1].startswith(b"I am writing")
        config.write_text(
            config.read_text().replace(
                "    addresses: [stalker", "    greeting_name: Sam\n    addresses: [stalker"
            )
        )
        named = guardmail(config, "warn", "Example Offender", "--dry-run")
        assert named.stdout.split(b"\r\n\r\n", 1)[1].startswith(b"Sam,\r\n\r\nI am writing")
