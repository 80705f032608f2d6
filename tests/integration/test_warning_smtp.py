"""The one warning, sent through a real SMTP submission server (aiosmtpd with AUTH) by the real
``guardmail`` command: once, never twice, not after a crash, not by two racing processes."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def write_config(
    tmp: Path, sink: SmtpSink, *, name: str = "Example Offender", send: str = "manual"
) -> Path:
    (tmp / "smtp-password").write_text("secret\n")
    shutil.copy(REPO / "config" / "warning.txt.j2", tmp / "warning.txt.j2")
    config = tmp / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp}/var
offenders:
  - name: {json.dumps(name)}
    addresses: [stalker@example.net]
    patterns: ["*@burner.example"]
warning:
  send: {send}
  from: "Jane Victim <jane@example.org>"
  subject: Stop contacting me
  template_file: {tmp}/warning.txt.j2
  law: "the Protection from Harassment Act 1997"
  smtp:
    host: 127.0.0.1
    port: {sink.port}
    tls: starttls
    ca_file: {sink.ca_file}
    username: victim
    password_file: {tmp}/smtp-password
sources:
  maildir:
    - path: {tmp}/var/Maildir
      create: true
      rescan_seconds: 0.3
"""
    )
    return config


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "smtp-ca.pem") as server:
        yield server


def status(config: Path) -> str:
    done = guardmail(config, "warn", "--status")
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def test_dry_run_prints_the_message_and_sends_nothing(sink: SmtpSink, tmp_path: Path) -> None:
    config = write_config(tmp_path, sink)
    done = guardmail(config, "warn", "Example Offender", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert b"To: stalker@example.net\r\n" in done.stdout
    assert b"Protection from Harassment Act 1997" in done.stdout
    assert b"would send to stalker@example.net" in done.stderr
    assert sink.received == []
    assert "Example Offender: not sent" in status(config)


def test_warning_is_delivered_once_kept_in_the_vault_and_a_second_is_refused(
    sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sink)
    first = guardmail(config, "warn", "example offender", "--yes")
    assert first.returncode == 0, first.stderr
    assert [r.rcpt_tos for r in sink.received] == [["stalker@example.net"]]
    assert "Example Offender: sent at" in status(config)
    second = guardmail(config, "warn", "Example Offender", "--yes")
    assert second.returncode == 1 and b"sent at" in second.stderr
    assert len(sink.received) == 1
    # The exact bytes the server received are the vault's warning blob, and the vault verifies.
    db_rows = guardmail(config, "evidence", "verify")
    assert db_rows.returncode == 0, db_rows.stderr
    blobs = list((tmp_path / "var" / "vault" / "default" / "blobs").rglob("*"))
    sent = [p.read_bytes() for p in blobs if p.is_file()]
    assert sink.received[0].data in sent


def test_killed_between_intent_and_result_leaves_unknown_and_nothing_is_resent(
    sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sink)
    sink.recorder.hold_data = True
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardmail", "-c", str(config), "warn", "Example Offender", "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert sink.recorder.data_started.wait(30), "the warning never reached DATA"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sink.recorder.release.set()
    assert "unknown: sending to stalker@example.net began" in status(config)
    again = guardmail(config, "warn", "Example Offender", "--yes")
    assert again.returncode == 1 and b"unknown" in again.stderr
    # The daemon, starting now with on_first_block, does not resend either.
    config = write_config(tmp_path, sink, send="on_first_block")
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        maildir = tmp_path / "var" / "Maildir"
        wait_for(lambda: (maildir / "new").is_dir(), what="maildir")
        (maildir / "tmp" / "m1").write_bytes(b"From: stalker@example.net\r\n\r\nhi\r\n")
        os.rename(maildir / "tmp" / "m1", maildir / "new" / "m1")
        wait_for(lambda: "item.quarantined" in daemon.log_text(), what="quarantine")
    finally:
        assert daemon.stop() == 0
    assert len([r for r in sink.received if r.data]) <= 1  # only the interrupted one, if any
    assert "warning.sending" not in daemon.log_text()
    marked = guardmail(config, "warn", "Example Offender", "--mark-sent", "--note", "seen in Sent")
    assert marked.returncode == 0 and "marked as sent by you" in status(config)


def test_two_processes_racing_send_one_warning(sink: SmtpSink, tmp_path: Path) -> None:
    config = write_config(tmp_path, sink)
    argv = [sys.executable, "-m", "guardmail", "-c", str(config), "warn", "Example Offender"]
    racers = [
        subprocess.Popen([*argv, "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=60) for p in racers)
    for p in racers:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        p.stderr.close()
    assert codes == [0, 1]
    assert len(sink.received) == 1


def test_header_injection_in_the_offender_name_is_refused(sink: SmtpSink, tmp_path: Path) -> None:
    config = write_config(tmp_path, sink, name="Ex\r\nBcc: everyone@example.org")
    done = guardmail(config, "warn", "Ex\r\nBcc: everyone@example.org", "--yes")
    assert done.returncode == 1
    assert b"line break or NUL" in done.stderr
    assert sink.received == []


def test_on_first_block_warns_once_and_never_answers_auto_submitted_mail(
    sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sink, send="on_first_block")
    maildir = tmp_path / "var" / "Maildir"
    daemon = Daemon(config, tmp_path / "daemon.log")

    def deliver(name: str, raw: bytes) -> None:
        (maildir / "tmp" / name).write_bytes(raw)
        os.rename(maildir / "tmp" / name, maildir / "new" / name)

    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="daemon start")
        deliver("a1", b"From: x@burner.example\r\nAuto-Submitted: auto-replied\r\n\r\naway\r\n")
        wait_for(lambda: "warning.not_answering" in daemon.log_text(), what="RFC 3834 restraint")
        assert sink.received == []
        deliver("a2", b"From: x@burner.example\r\nSubject: hi\r\n\r\nhello\r\n")
        wait_for(lambda: len(sink.received) == 1, what="the first warning")
        deliver("a3", b"From: stalker@example.net\r\nSubject: again\r\n\r\nhello\r\n")
        wait_for(lambda: daemon.log_text().count("item.quarantined") == 3, what="third item")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert len(sink.received) == 1
    assert sink.received[0].rcpt_tos == ["stalker@example.net"]


def test_an_offender_renamed_with_a_reported_alias_is_warned_once_by_twenty_racing_attempts(
    sink: SmtpSink, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sink, name="Stalker")
    with config.open("a") as f:
        f.write(f'offenders_files: ["{tmp_path}/offenders.d/*.yaml"]\n')
    alias = b"From: Stalker <alias@other.example>\r\nSubject: new account\r\n\r\nhi\r\n"
    done = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(config), "report", "--offender", "Stalker"],
        input=alias,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"Stalker (reported)" in done.stdout
    text = config.read_text().replace('name: "Stalker"', 'name: "Stalker Renamed"')
    config.write_text(text.replace("send: manual", "send: on_first_block"))
    names = ["Stalker Renamed", "Stalker (reported)"]
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "guardmail", "-c", str(config), "warn", names[i % 2], "--yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(20)
    ]
    codes = sorted(p.wait(timeout=120) for p in racers)
    assert codes == [0] + [1] * 19
    # The alias's next mail, with on_first_block, is archived and sends nothing more either.
    done = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(config), "report"],
        input=alias.replace(b"hi", b"again"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(sink.received) == 1
    assert "Stalker Renamed: sent at" in status(config)
    assert "Stalker (reported): sent at" in status(config)
