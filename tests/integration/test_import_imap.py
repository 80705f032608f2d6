"""``guardmail import imap``: a folder of a real Dovecot (IMAPS, a test CA) imported through the
configured source's connection; the folder is left exactly as it was, not even \\Seen set."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.integration.test_import_cli import run_import
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

OFFENDER = b"From: Stalker <stalker@example.net>\r\nSubject: old threat %d\r\n\r\nI see you\r\n"
CLEAN = b"From: friend@innocent.example\r\nSubject: lunch\r\n\r\nsee you\r\n"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


def folder_state(server: Dovecot) -> list[tuple[bytes, bytes]]:
    conn = server.imap("alice")
    try:
        conn.select("Old", readonly=True)
        typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        return [(d[0], d[1]) for d in data if isinstance(d, tuple)]
    finally:
        conn.logout()


def test_an_imap_folder_is_imported_read_only(tmp_path: Path, dovecot: Dovecot) -> None:
    (tmp_path / "password").write_text("secret\n")
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"""\
state_dir: {tmp_path}/var
aliases:
  enabled: true
offenders:
  - name: Ex
    addresses: [stalker@example.net]
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {dovecot.imaps_port}
      tls: implicit
      ca_file: {dovecot.ca_file}
      username: alice
      password_file: {tmp_path}/password
"""
    )
    conn = dovecot.imap("alice")
    conn.create("Old")
    for n in range(3):
        conn.append("Old", "", imaplib.Time2Internaldate(1_700_000_000 + n), OFFENDER % n)
        conn.append("Old", "", imaplib.Time2Internaldate(1_700_000_000 + n), CLEAN)
    conn.logout()
    before = folder_state(dovecot)

    done = run_import(config, "imap", "alice", "--folder", "Old")
    assert done.returncode == 0, done.stderr
    assert "6 items (3 archived, 0 already)" in done.stdout
    assert folder_state(dovecot) == before  # nothing moved, no flag set
    assert all(b"\\Seen" not in head for head, _ in before)

    settings = load_config(config).settings
    tenant = open_tenant(settings)
    try:
        rows = tenant.vault.rows(kind="archived")
        blobs = [tenant.vault.blobs.get(r.sha256 or "") for r in rows]
        bodies = [journal.entry(r) for r in rows]
        with tenant.storage.read() as tx:
            learned = tx.alias_features(settings.tenant)
    finally:
        tenant.close()
    assert blobs == [OFFENDER % n for n in range(3)]
    # The alias linker learned them, as it learns live offender mail.
    assert sorted(f.sha256 for f in learned) == sorted(r.sha256 or "" for r in rows)
    uids = [b["meta"]["imap_uid"] for b in bodies]
    assert all(re.fullmatch(r"\d+/[135]", u) for u in uids), uids
    assert bodies[0]["imported"]["note"].startswith("imported from imap alice/Old at ")

    again = run_import(config, "imap", "alice", "--folder", "Old")
    assert "(0 archived, 3 already)" in again.stdout


def test_an_unknown_imap_source_is_named(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(f"state_dir: {tmp_path}/var\n")
    done = run_import(config, "imap", "bob")
    assert done.returncode == 2
    assert "no IMAP source named 'bob'" in done.stderr
