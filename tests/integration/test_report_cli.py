"""The real ``guardmail report`` command: exit codes, what it prints, what the vault holds, and
the running daemon catching the reported sender's next message."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.integration.test_maildir_daemon import deliver

pytestmark = pytest.mark.integration

CONFIG = """\
# hand-written by the victim; guardmail must never rewrite it
state_dir: {root}/var
offenders:
  - name: Known
    addresses: [known@example.net]
offenders_files: ["{root}/offenders.d/*.yaml"]
sources:
  maildir:
    - path: {root}/var/Maildir
      rescan_seconds: 0.3
"""
MAIL = b"From: Stalker <stalker@evil.example>\r\nSubject: you again\r\n\r\n\xff body\r\n"


def report(config: Path, raw: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(config), "report", *args],
        input=raw,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(root=tmp_path))
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "var" / "Maildir" / sub).mkdir(parents=True)
    (tmp_path / "var").chmod(0o700)  # private, as guardmail makes it (else: a warning on stderr)
    return path


def test_report_prints_what_it_did_and_the_vault_holds_the_bytes(config: Path) -> None:
    text = config.read_text()
    done = report(config, MAIL, "--client", "neomutt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == f"archived: vault entry 1, {len(MAIL)} bytes"
    assert lines[2] == "offender: stalker@evil.example"
    assert lines[3].startswith("rule added: addresses: stalker@evil.example (new offender")
    assert lines[-1] == "guardmail: reported as vault entry 1, offender stalker@evil.example"
    assert done.stderr == b""  # the config loads offenders.d/*.yaml: no hint
    assert guardmail(config, "evidence", "show", "1").stdout == MAIL
    assert config.read_text() == text

    again = report(config, MAIL, "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert (data["seq"], data["duplicate"], data["rule_added"]) == (1, True, None)
    listing = guardmail(config, "evidence", "list", "--json").stdout.splitlines()
    assert len(listing) == 1
    assert guardmail(config, "check-config").returncode == 0


@pytest.mark.parametrize(
    ("raw", "args", "rc", "stderr"),
    [
        (b"", (), 2, "the item is empty"),
        (b"Subject: x\n\nno sender\n", (), 2, "no From address"),
        (MAIL, ("--offender", "Nobody"), 2, "no offender is named 'Nobody'"),
        (MAIL, ("--new-offender", "KNOWN"), 2, "already exists"),
        (MAIL, ("--offender", "a", "--new-offender", "b"), 2, "not allowed with"),
    ],
)
def test_report_exit_codes_for_bad_input(
    config: Path, raw: bytes, args: tuple[str, ...], rc: int, stderr: str
) -> None:
    done = report(config, raw, *args)
    assert done.returncode == rc
    assert stderr in done.stderr.decode()
    assert guardmail(config, "evidence", "list", "--json").stdout == b""


def test_report_exits_1_when_the_vault_cannot_take_the_item(config: Path, tmp_path: Path) -> None:
    blobs = tmp_path / "var" / "vault" / "default" / "blobs"
    blobs.parent.mkdir(parents=True)
    blobs.write_text("a file where the blob directory should be")
    done = report(config, MAIL)
    assert done.returncode == 1
    assert "cannot archive" in done.stderr.decode()
    assert not (tmp_path / "offenders.d" / "reported.yaml").exists()


def test_report_exits_1_and_says_not_blocked_when_the_config_does_not_load_the_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "g.yaml"
    config.write_text(f"state_dir: {tmp_path}/var\noffenders_files: []\n")
    done = report(config, MAIL)
    assert done.returncode == 1, done.stderr
    entry = f'"{tmp_path}/offenders.d/*.yaml"'
    assert done.stderr.decode() == (
        f"guardmail: archived, but NOT blocked: your config does not load "
        f"{tmp_path}/offenders.d/reported.yaml, so the daemon will not block this sender; "
        f"write offenders_files: [{entry}] in {config}, "
        f"or leave offenders_files out (it then loads {entry})\n"
    )
    assert "reported as vault entry" not in done.stdout.decode()


def test_running_daemon_on_a_config_without_offenders_files_blocks_the_reported_sender(
    tmp_path: Path,
) -> None:
    # As the example config: no offenders_files, no offenders.d yet. Reports write
    # offenders.d/reported.yaml beside the config, which is loaded by default.
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path).replace("offenders_files", "# offenders_files"))
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "control.listening" in daemon.log_text(), what="daemon start")
        done = report(config, MAIL, "--client", "neomutt")
        assert done.returncode == 0, done.stderr
        assert done.stderr == b""
        deliver(maildir, "2.next.host", b"From: stalker@evil.example\r\n\r\n!\r\n")
        wait_for(
            lambda: (maildir / ".Quarantine" / "new" / "2.next.host").exists(),
            what="follow-up quarantined",
        )
    finally:
        assert daemon.stop() == 0, daemon.log_text()


def test_daemon_quarantines_what_the_reported_sender_sends_next(
    config: Path, tmp_path: Path
) -> None:
    maildir = tmp_path / "var" / "Maildir"
    quarantine = maildir / ".Quarantine" / "new"
    (tmp_path / "offenders.d").mkdir()
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="daemon start")
        deliver(maildir, "1.first.host", MAIL)
        done = report(config, MAIL, "--client", "neomutt")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: "config.reloaded" in daemon.log_text(), what="hot reload")
        follow_up = b"From: stalker@evil.example\r\nSubject: answer me\r\n\r\n!\r\n"
        deliver(maildir, "2.next.host", follow_up)
        wait_for(lambda: (quarantine / "2.next.host").exists(), what="follow-up quarantined")
        # The reported message itself was in the Maildir too: the reload rejudged it.
        wait_for(lambda: (quarantine / "1.first.host").exists(), what="reported one rejudged")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    listing = guardmail(config, "evidence", "list", "--json").stdout
    entries = [json.loads(line) for line in listing.splitlines()]
    assert {e["offender"] for e in entries} == {"stalker@evil.example"}
    # Reported once, then quarantined by the daemon from the Maildir: two arrivals, kept apart.
    assert len(entries) == 3


def test_report_goes_through_the_running_daemons_control_socket(
    config: Path, tmp_path: Path
) -> None:
    (tmp_path / "offenders.d").mkdir()
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="daemon start")
        with contextlib.suppress(AssertionError):  # a daemon without the socket: see the end
            wait_for(lambda: "control.listening" in daemon.log_text(), timeout=3)
        done = report(config, MAIL, "--client", "neomutt", "--new-offender", "Stalker")
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().splitlines()[-1] == (
            "guardmail: reported as vault entry 1, offender Stalker"
        )
        bad = report(config, b"Subject: x\n\nno sender\n")
        assert bad.returncode == 2
        assert "the message has no From address to block" in bad.stderr.decode()
        # The daemon applied the new rule at once: its next message is quarantined.
        maildir = tmp_path / "var" / "Maildir"
        deliver(maildir, "2.next.host", b"From: stalker@evil.example\r\n\r\n!\r\n")
        wait_for(
            lambda: (maildir / ".Quarantine" / "new" / "2.next.host").exists(),
            what="follow-up quarantined",
        )
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    log = daemon.log_text()
    assert not (tmp_path / "var" / "control.sock").exists()
    assert "control.listening" in log, "the daemon did not start its control socket"
    assert "control.reported" in log
    tenant = open_tenant(load_config(config).settings)
    try:
        first = journal.entry(tenant.vault.rows(kind="archived")[0])
    finally:
        tenant.close()
    assert first["offender"] == "Stalker"
    assert first["meta"]["via"] == "control socket"
    assert first["meta"]["client"] == "neomutt"
