"""The vault on a full filesystem (a small tmpfs the test mounts, as root): nothing destructive
happens, the offender's mail stays where it is (Maildir) or is answered 451 (SMTP filter), and
both are handled, once, as soon as space returns (issue 23, "resources and faults")."""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.ports import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
sources:
  maildir:
    - path: {root}/Maildir
      create: true
      rescan_seconds: 0.3
  smtp_filter:
    listen: 127.0.0.1:{port}
    next_hop: 127.0.0.1:9
    tenants_dir: {root}/tenants.d
"""
TENANT = """\
name: alice
recipients: [alice@example.org]
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
    action: block
"""
BIG = b"From: Stalker <stalker@example.net>\r\nSubject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    # 2 MiB: room, once the filler is gone, for the daemon's own files (two SQLite databases
    # with their WAL, ~0.5 MB new; relayed copies have their own since 2026-12-03) and the two
    # 200 KB blobs. Smaller, and the vault is still full when "space returns": 451 is then right.
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(var)], check=True
    )
    try:
        yield var
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)


def fill(var: Path) -> Path:
    filler = var / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def send(port: int, raw: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.org")
        try:
            s.sendmail("stalker@example.net", ["alice@example.org"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
        return 250


def test_a_full_vault_disk_destroys_nothing_and_everything_is_handled_once_space_returns(
    tmp_path: Path, small_disk: Path
) -> None:
    (port,) = free_ports(1)
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "alice.yaml").write_text(TENANT)
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path, port=port))
    daemon = Daemon(config, tmp_path / "daemon.log")
    maildir = tmp_path / "Maildir"
    try:
        wait_for(lambda: "smtp_filter.listening" in daemon.log_text(), what="listening")
        filler = fill(small_disk)
        (maildir / "tmp" / "1.big.host").write_bytes(BIG)
        os.rename(maildir / "tmp" / "1.big.host", maildir / "new" / "1.big.host")
        wait_for(lambda: "maildir.vault_unavailable" in daemon.log_text(), what="vault full")
        assert (maildir / "new" / "1.big.host").read_bytes() == BIG  # left where it was
        assert send(port, BIG) == 451  # Postfix keeps it queued and retries
        assert daemon.proc.poll() is None
        filler.unlink()
        wait_for(
            lambda: (maildir / ".Quarantine" / "new" / "1.big.host").exists(),
            what="quarantined once space returned",
        )
        assert send(port, BIG) == 250
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert "Traceback" not in daemon.log_text()
    main = guardmail(config, "evidence", "list", "--json")
    alice = guardmail(config, "--tenant", "alice", "evidence", "list", "--json")
    assert len(main.stdout.splitlines()) == 1 and len(alice.stdout.splitlines()) == 1
    for args in ((), ("--tenant", "alice")):
        verify = guardmail(config, *args, "evidence", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
