"""Editing the config or an offender file under a running daemon applies it without SIGHUP; a
broken edit is logged with file:line:column and the last good configuration keeps working."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail

pytestmark = pytest.mark.integration

CONFIG = """\
state_dir: {root}/var
offenders_files: ["{root}/offenders.d/*.yaml"]
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
{extra}sources:
  maildir:
    - path: {root}/var/Maildir
      create: true
      rescan_seconds: 0.3
"""


def deliver(maildir: Path, name: str, raw: bytes) -> None:
    (maildir / "tmp" / name).write_bytes(raw)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


def replace_file(path: Path, text: str) -> None:
    """As editors save: write a new file, rename it over the old one."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.rename(tmp, path)


def test_edits_apply_without_sighup_and_bad_edits_keep_the_last_good_config(
    tmp_path: Path,
) -> None:
    config = tmp_path / "guardmail.yaml"
    (tmp_path / "offenders.d").mkdir()
    config.write_text(CONFIG.format(root=tmp_path, extra=""))
    maildir = tmp_path / "var" / "Maildir"
    quarantine = maildir / ".Quarantine" / "new"
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")

        began = time.monotonic()
        replace_file(
            config,
            CONFIG.format(root=tmp_path, extra="  - name: Second\n    domains: [second.example]\n"),
        )
        wait_for(lambda: daemon.log_text().count("config.reloaded") == 1, what="edit applied")
        print(f"config edit applied after {time.monotonic() - began:.2f} s")
        deliver(maildir, "m1", b"From: x@mx.second.example\r\n\r\n1\r\n")
        wait_for(lambda: (quarantine / "m1").exists(), what="new offender applied")

        began = time.monotonic()
        (tmp_path / "offenders.d" / "third.yaml").write_text(
            "offenders:\n  - name: Third\n    addresses: [third@example.org]\n"
        )
        wait_for(lambda: daemon.log_text().count("config.reloaded") == 2, what="new file seen")
        print(f"new offender file applied after {time.monotonic() - began:.2f} s")
        deliver(maildir, "m2", b"From: third@example.org\r\n\r\n2\r\n")
        wait_for(lambda: (quarantine / "m2").exists(), what="offender from the new file")

        replace_file(config, "offenders:\n  - name: Broken\n    adresses: [a@b.example]\n")
        wait_for(lambda: "config.reload_rejected" in daemon.log_text(), what="bad edit logged")
        assert "guardmail.yaml:3:5: offenders.0.adresses" in daemon.log_text()
        deliver(maildir, "m3", b"From: stalker@example.net\r\n\r\n3\r\n")
        wait_for(lambda: (quarantine / "m3").exists(), what="last good config still applied")
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0, daemon.log_text()


def test_a_500_deep_file_on_reload_is_logged_and_the_last_good_rules_keep_working(
    tmp_path: Path,
) -> None:
    config = tmp_path / "guardmail.yaml"
    offenders = tmp_path / "offenders.d"
    offenders.mkdir()
    (offenders / "ex.yaml").write_text("offenders:\n  - name: Ex\n    domains: [ex.example]\n")
    config.write_text(CONFIG.format(root=tmp_path, extra=""))
    maildir = tmp_path / "var" / "Maildir"
    quarantine = maildir / ".Quarantine" / "new"
    deep = "[" * 500 + "]" * 500
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")

        replace_file(offenders / "ex.yaml", f"offenders:\n  - name: Ex\n    domains: {deep}\n")
        wait_for(lambda: "config.reload_rejected" in daemon.log_text(), what="deep offenders file")
        assert "offenders.d/ex.yaml:3:" in daemon.log_text()
        deliver(maildir, "m1", b"From: someone@ex.example\r\n\r\n1\r\n")
        wait_for(lambda: (quarantine / "m1").exists(), what="last good offender file applied")

        replace_file(config, f"offenders: {deep}\n")
        wait_for(lambda: "guardmail.yaml:1:" in daemon.log_text(), what="deep main file logged")
        deliver(maildir, "m2", b"From: stalker@example.net\r\n\r\n2\r\n")
        wait_for(lambda: (quarantine / "m2").exists(), what="last good main config applied")
        assert daemon.proc.poll() is None
        assert "RecursionError" not in daemon.log_text()
    finally:
        assert daemon.stop() == 0, daemon.log_text()


def test_status_and_evidence_list_work_on_the_running_config_after_a_broken_edit(
    tmp_path: Path,
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path, extra=""))
    maildir = tmp_path / "var" / "Maildir"
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")
        deliver(maildir, "m1", b"From: stalker@example.net\r\n\r\n1\r\n")
        wait_for(lambda: (maildir / ".Quarantine" / "new" / "m1").exists(), what="quarantine")
        replace_file(config, config.read_text() + "colour: red\n")
        wait_for(lambda: "config.reload_rejected" in daemon.log_text(), what="bad edit logged")
        status = guardmail(config, "status")
        listing = guardmail(config, "evidence", "list", "--json")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    for done in (status, listing):
        assert done.returncode == 0, done.stderr
        err = done.stderr.decode()
        assert "has errors, so this uses the last good configuration the daemon loaded" in err
        assert f"{config}:11:1: colour: unknown key 'colour'" in err
    assert b"daemon: running" in status.stdout
    assert b'"offender": "Example Offender"' in listing.stdout


def test_a_report_written_beside_the_config_by_another_process_applies_without_a_restart(
    tmp_path: Path,
) -> None:
    # No offenders_files and no offenders.d yet, as with the example config: the first report
    # made without the daemon (--no-daemon) creates offenders.d/reported.yaml beside the config.
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path, extra="").replace("offenders_files", "#"))
    maildir = tmp_path / "var" / "Maildir"
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: "maildir.watching" in daemon.log_text(), what="start")
        done = subprocess.run(
            [sys.executable, "-m", "guardmail", "-c", str(config), "report", "--no-daemon"],
            input=b"From: new@harass.example\r\n\r\nreported\r\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: "config.reloaded" in daemon.log_text(), what="reported file seen")
        deliver(maildir, "m1", b"From: new@harass.example\r\n\r\nnext\r\n")
        wait_for(lambda: (maildir / ".Quarantine" / "new" / "m1").exists(), what="quarantine")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
