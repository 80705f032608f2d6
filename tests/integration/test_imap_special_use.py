"""Folders by SPECIAL-USE role, not by name (issue 30): a Dovecot whose Junk folder has a
localized name, as Gmail's and Outlook's have in the person's language. guardmail quarantines
into the folder the server flags \\Junk and never creates one called "\\Junk" or "Junk"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon
from tests.integration.test_imap_dovecot import offender_mail
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

JUNK = "Courrier indésirable"
# Gmail-like: special-use folders under "[Gmail]/" with names in the person's language.
LOCALIZED = f"""\
namespace inbox {{
  inbox = yes
  separator = /
  mailbox "{JUNK}" {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox "[Gmail]/Tous les messages" {{
    special_use = \\All
    auto = subscribe
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, extra_conf=LOCALIZED)
    yield server
    server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def write_config(tmp: Path, server: Dovecot, quarantine: str) -> Path:
    (tmp / "pw").write_text("secret\n")
    config = tmp / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {server.imap_port}
      tls: none
      username: alice
      password_file: {tmp}/pw
      quarantine_folder: '{quarantine}'
      poll_seconds: 0.5
"""
    )
    return config


def folders(server: Dovecot) -> dict[str, int]:
    """Every folder of alice's mailbox (names decoded) and how many messages it holds."""
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    try:
        client.login("alice", "secret")
        counts: dict[str, int] = {}
        for flags, _, name in client.list_folders():
            if {b"\\Noselect", b"\\NonExistent"} & set(flags):
                continue  # "[Gmail]" itself holds no mail
            counts[str(name)] = int(client.select_folder(name, readonly=True)[b"EXISTS"])
        return counts
    finally:
        client.logout()


def test_quarantine_by_role_goes_to_the_localized_junk_folder(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, dovecot, "\\Junk")
    dovecot.deliver("alice", offender_mail(1))
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: folders(dovecot).get(JUNK) == 1, what="offender mail in the Junk folder")
    found = folders(dovecot)
    assert found["INBOX"] == 0
    assert not {"Junk", "\\Junk", "Quarantine"} & set(found), found


def test_a_role_the_server_does_not_flag_is_a_clear_error_and_nothing_moves(
    dovecot: Dovecot, tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = write_config(tmp_path, dovecot, "\\Archive")
    dovecot.deliver("alice", offender_mail(2))
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: "imap.folder_role_missing" in daemon.log_text(), what="the error logged")
    assert "flags no folder as \\\\Archive (SPECIAL-USE)" in daemon.log_text()  # logfmt
    found = folders(dovecot)
    assert found["INBOX"] == 1 and "\\Archive" not in found and "Archive" not in found
    assert daemon.proc.poll() is None
