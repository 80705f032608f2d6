"""`guardmail sieve export/install` against a real Dovecot with Pigeonhole: offenders' mail is
filed into Quarantine at LMTP delivery (even with the daemon stopped), the user's own Sieve rules
still work, and the daemon archives what the server filed."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.sieve.managesieve import ManageSieve
from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

USER_SCRIPT = """\
require ["fileinto", "mailbox"];
if header :contains "subject" "newsletter" { fileinto :create "News"; }
"""


def config(tmp: Path, server: Dovecot) -> Path:
    (tmp / "password").write_text("secret\n")
    path = tmp / "guardmail.yaml"
    path.write_text(
        f"""\
state_dir: {tmp}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
    patterns: ["*@burner.example", "re:^st[a4]lker[0-9]*@", "re:^\\\\d+x@evade.example"]
    domains: [harass.example]
    display_names: ["Creep*"]
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {server.imap_port}
      tls: none
      username: alice
      password_file: {tmp}/password
      folders: [INBOX, Quarantine]
"""
    )
    return path


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, sieve=True)
    yield server
    server.stop()


def folder_subjects(server: Dovecot, folder: str) -> list[str]:
    conn = server.imap("alice")
    try:
        typ, _ = conn.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(p[1].decode().split(":", 1)[1].strip() for p in data if isinstance(p, tuple))
    finally:
        conn.logout()


def message(sender: str, subject: str) -> bytes:
    return f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def test_exported_script_compiles_with_sievec(dovecot: Dovecot, tmp_path: Path) -> None:
    done = guardmail(config(tmp_path, dovecot), "sieve", "export")
    assert done.returncode == 0, done.stderr
    script = tmp_path / "guardmail.sieve"
    script.write_bytes(done.stdout)
    compiled = subprocess.run(
        ["sievec", "-c", str(dovecot.root / "dovecot.conf"), str(script), str(tmp_path / "o")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    text = done.stdout.decode()
    assert "left to the daemon: regex '^\\\\d+x@evade.example': Python-only syntax" in text
    assert 'fileinto :create "Quarantine";' in text


def test_installed_rules_file_offenders_and_keep_the_users_own_rules(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    cfg = config(tmp_path, dovecot)
    own = ManageSieve("127.0.0.1", dovecot.sieve_port)
    own.authenticate("alice", "secret")
    own.putscript("mine", USER_SCRIPT)
    own.setactive("mine")
    own.logout()

    done = guardmail(
        cfg, "sieve", "install", "--host", "127.0.0.1", "--port", str(dovecot.sieve_port),
        "--tls", "none", "--user", "alice", "--password-file", str(tmp_path / "password"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"then your script 'mine'" in done.stdout
    again = guardmail(cfg, "sieve", "install", "--account", "alice", "--port",
                      str(dovecot.sieve_port))  # fmt: skip
    assert again.returncode == 0 and b"already active" in again.stdout, again.stderr

    check = ManageSieve("127.0.0.1", dovecot.sieve_port)
    check.authenticate("alice", "secret")
    assert sorted(check.listscripts()) == [("guardmail", False), ("guardmail-main", True),
                                           ("mine", False)]  # fmt: skip
    check.logout()

    # The daemon is not running: the server files the mail on its own.
    for sender, subject in [
        ("Stalker <STALKER+x@example.net>", "exact"),
        ("a@burner.example", "glob"),
        ("st4lker99@new.example", "regex"),
        ("x@mx.harass.example", "subdomain"),
        ('"Creep Joe" <joe@innocent.example>', "display name"),
        ("friend@innocent.example", "newsletter of the week"),
        ("friend@innocent.example", "lunch"),
    ]:
        dovecot.deliver("alice@example.org", message(sender, subject))
    assert folder_subjects(dovecot, "Quarantine") == sorted(
        ["exact", "glob", "regex", "subdomain", "display name"]
    )
    assert folder_subjects(dovecot, "News") == ["newsletter of the week"]
    assert folder_subjects(dovecot, "INBOX") == ["lunch"]

    # Started now, the daemon archives what the server filed, and leaves it in Quarantine.
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for(lambda: daemon.log_text().count("item.quarantined") == 5, what="archived")
    finally:
        assert daemon.stop() == 0, daemon.log_text()
    assert "where the server's Sieve filed it" in daemon.log_text()
    assert len(folder_subjects(dovecot, "Quarantine")) == 5
    listing = guardmail(cfg, "evidence", "list", "--json")
    assert len(listing.stdout.splitlines()) == 5
