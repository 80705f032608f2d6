"""The vault turning read-only, or out of guardmail's permission, while the daemon runs (issue 23,
"resources and faults"), on the Maildir channel and the SMTP filter at once: nothing
destructive (the offender's file stays in new/, the filter answers 451 and archives nothing),
a log line that says so, the daemon keeps running, and once the vault is writable again each
item is handled exactly once (one archived entry, its blob byte-exact, ``evidence verify``
clean; a retry of the same queue ID archives nothing more).

How each fault is made, for real (the tests run as root):
- Read-only: the vault directory (``state_dir/vault``: blobs, HEAD) is the test's own tmpfs,
  remounted ``ro`` and back ``rw``. The kernel refuses to remount a filesystem read-only while a
  file on it is open for writing (EBUSY), and SQLite keeps the database open: so the database
  stays on the disk beside it, as it would on a separate evidence disk.
- Lost permission: root ignores mode bits, and the daemon's interpreter lives under /root
  (0700), out of reach of a second local user. So the daemon runs as the shipped systemd unit
  runs it, without any capability (``CapabilityBoundingSet=``, here ``setpriv --bounding-set
  -all``): mode bits and ownership then bind it like any user. Mid-run the vault directory is
  chowned to nobody (0700), or chmodded 000 (still the daemon's, but out of its reach: guardmail
  does not chmod its way back), and given back afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.ports import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs and chown need root"),
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
MAIL = b"From: Stalker <stalker@example.net>\r\nSubject: again\r\n\r\nI see you.\r\n"
NOBODY = 65534


def send(port: int, raw: bytes, queue_id: str) -> int:
    """One delivery attempt as Postfix's after-queue client makes it; the reply code to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("mx.example.org")
        assert s.docmd("XFORWARD", f"IDENT={queue_id} SOURCE=REMOTE")[0] == 250
        try:
            s.sendmail("stalker@example.net", ["alice@example.org"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code
        return 250


def entries(config: Path, *tenant: str) -> list[dict[str, object]]:
    listing = guardmail(config, *tenant, "evidence", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return [json.loads(line) for line in listing.stdout.splitlines()]


def setup(root: Path) -> tuple[Path, int]:
    (port,) = free_ports(1)
    (root / "tenants.d").mkdir()
    (root / "tenants.d" / "alice.yaml").write_text(TENANT)
    config = root / "guardmail.yaml"
    config.write_text(CONFIG.format(root=root, port=port))
    (root / "var").mkdir(mode=0o700)
    return config, port


def handled_once_after_the_vault_returns(
    root: Path,
    daemon: Daemon,
    config: Path,
    port: int,
    *,
    lose: Callable[[], None],
    restore: Callable[[], None],
    logged: str,
) -> None:
    maildir = root / "Maildir"
    try:
        wait_for(lambda: "smtp_filter.listening" in daemon.log_text(), what="listening")
        for tenant in ("default", "alice"):
            vault = root / "var" / "vault" / tenant
            wait_for(vault.is_dir, what=f"{vault} made")
        lose()
        (maildir / "tmp" / "1.evil.host").write_bytes(MAIL)
        os.rename(maildir / "tmp" / "1.evil.host", maildir / "new" / "1.evil.host")
        wait_for(lambda: "maildir.vault_unavailable" in daemon.log_text(), what="maildir retry")
        assert send(port, MAIL, "Q1") == 451  # Postfix keeps it queued and retries
        assert "smtp_filter.vault_unavailable" in daemon.log_text()
        assert logged in daemon.log_text()  # the log says why, in the system's words
        assert (maildir / "new" / "1.evil.host").read_bytes() == MAIL  # left where it was
        assert not (maildir / ".Quarantine").exists()
        assert daemon.proc.poll() is None
        assert entries(config) == [] and entries(config, "--tenant", "alice") == []
        restore()
        wait_for(
            lambda: (maildir / ".Quarantine" / "new" / "1.evil.host").exists(),
            what="quarantined once the vault is writable again",
            timeout=75,  # the file's retry backoff (maildir.VAULT_RETRY) is capped at a minute
        )
        assert not (maildir / "new" / "1.evil.host").exists()
        assert send(port, MAIL, "Q1") == 250  # Postfix's retry: archived and withheld
        assert send(port, MAIL, "Q1") == 250  # a duplicate delivery archives nothing more
    finally:
        restore()
        assert daemon.stop() == 0, daemon.log_text()
    assert "Traceback" not in daemon.log_text()
    digest = hashlib.sha256(MAIL).hexdigest()
    for tenant, args in (("default", ()), ("alice", ("--tenant", "alice"))):
        listed = entries(config, *args)
        assert [(e["kind"], e["sha256"]) for e in listed] == [("archived", digest)], listed
        blob = root / "var" / "vault" / tenant / "blobs" / digest[:2] / digest
        assert blob.read_bytes() == MAIL
        verify = guardmail(config, *args, "evidence", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    vault = tmp_path / "var" / "vault"
    if vault.is_mount():
        subprocess.run(["umount", "-l", str(vault)], check=False)


def test_a_vault_remounted_read_only_destroys_nothing_and_everything_is_handled_once_after(
    root: Path,
) -> None:
    config, port = setup(root)
    vault = root / "var" / "vault"
    vault.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(vault)],
                   check=True)  # fmt: skip

    def remount(mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(vault)], check=True, timeout=30)

    daemon = Daemon(config, root / "daemon.log")
    handled_once_after_the_vault_returns(
        root,
        daemon,
        config,
        port,
        lose=lambda: remount("ro"),
        restore=lambda: remount("rw"),
        logged="Read-only file system",
    )


class CaplessDaemon(Daemon):
    """``guardmail run`` as root without any capability, as the shipped systemd unit runs it."""

    def __init__(self, config: Path, log: Path) -> None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is not installed")
        self.log = log
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--",
                 sys.executable, "-m", "guardmail", "-c", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )  # fmt: skip


@pytest.mark.parametrize("how", ["chown", "chmod"])
def test_a_vault_taken_out_of_the_daemons_permission_destroys_nothing_and_recovers(
    root: Path, how: str
) -> None:
    config, port = setup(root)
    vault = root / "var" / "vault"

    def lose() -> None:
        if how == "chown":
            os.chown(vault, NOBODY, NOBODY)  # 0700, another owner
        else:
            vault.chmod(0)  # still ours, out of reach (0500 would leave the 0700 dirs below)

    def restore() -> None:
        os.chown(vault, 0, 0)
        vault.chmod(0o700)

    daemon = CaplessDaemon(config, root / "daemon.log")
    handled_once_after_the_vault_returns(
        root, daemon, config, port, lose=lose, restore=restore, logged="Permission denied"
    )
