"""No one let in (issue 23): one tenant's evidence, offenders and warning are out of another
tenant's reach through the CLI; a second local user can read nothing of the state tree and
reach no socket in it; every file and directory has the mode the README promises (0600/0700).

The state directory sits in a world-traversable directory here, so that only guardmail's own
modes stand between the other user and the evidence.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.tenants import load_tenants
from guardmail.core.item import mail_item
from guardmail.core.rules import decide
from guardmail.daemon.tenant import open_tenant
from guardmail.pipeline_evidence import evidence_metadata
from tests.conftest import wait_for
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.ports import free_ports

pytestmark = pytest.mark.integration

OTHER_USER = "gmtest-other"
CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Main Ex
    addresses: [main-ex@example.net]
sources:
  maildir:
    - path: {root}/Maildir
      create: true
  smtp_filter:
    listen: 127.0.0.1:{port}
    next_hop: 127.0.0.1:9
    tenants_dir: {root}/tenants.d
"""
TENANT = """\
name: {name}
recipients: [{name}@example.org]
offenders:
  - name: {Name} Ex
    addresses: [ex@{name}.example]
"""
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def root() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="gm-iso-"))
    top.chmod(0o755)  # anyone may pass through: guardmail's modes are what protects
    yield top
    shutil.rmtree(top, ignore_errors=True)


def setup(root: Path) -> Path:
    (port,) = free_ports(1)
    config = root / "guardmail.yaml"
    config.write_text(CONFIG.format(root=root, port=port))
    (root / "tenants.d").mkdir()
    for name in ("alice", "bob"):
        text = TENANT.format(name=name, Name=name.title())
        (root / "tenants.d" / f"{name}.yaml").write_text(text)
    bob = next(t for t in load_tenants(root / "tenants.d").tenants if t.name == "bob")
    tenant = open_tenant(bob.settings(state_dir=root / "var"))
    try:
        raw = b"From: ex@bob.example\r\nTo: bob@example.org\r\nSubject: bob's\r\n\r\nsecret\r\n"
        item = mail_item(raw, tenant="bob", account="", source_ref="q1", received_at=NOW)
        verdict = decide(item.identities, tenant.pipeline.rules, now=NOW)
        tenant.vault.put(raw, source_ref="q1", metadata=evidence_metadata(item, verdict), now=NOW)
    finally:
        tenant.close()
    return config


def test_one_tenant_never_sees_another_tenants_evidence_or_offenders(root: Path) -> None:
    config = setup(root)
    listing = guardmail(config, "--tenant", "alice", "evidence", "list", "--json")
    assert listing.returncode == 0 and listing.stdout.strip() == b"", listing.stderr
    bobs = guardmail(config, "--tenant", "bob", "evidence", "list", "--json")
    seq = json.loads(bobs.stdout.splitlines()[0])["seq"]
    shown = guardmail(config, "--tenant", "alice", "evidence", "show", str(seq))
    assert shown.returncode != 0 and b"secret" not in shown.stdout
    export = guardmail(
        config, "--tenant", "alice", "evidence", "export", "--offender", "Bob Ex",
        "--out", str(root / "out"),
    )  # fmt: skip
    assert export.returncode != 0 and not (root / "out").exists()
    assert b"Bob Ex" not in export.stderr.replace(b"'Bob Ex'", b"")  # named only as asked
    warn = guardmail(config, "--tenant", "alice", "warn", "Bob Ex", "--dry-run")
    assert warn.returncode != 0 and b"ex@bob.example" not in warn.stdout + warn.stderr
    main = guardmail(config, "evidence", "list", "--json")
    assert main.returncode == 0 and b"bob" not in main.stdout


def _other_user() -> str:
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", OTHER_USER],
            check=True,
            timeout=60,
        )
    return OTHER_USER


@pytest.mark.skipif(os.geteuid() != 0, reason="making a second local user needs root")
def test_a_second_local_user_reads_nothing_and_reaches_no_socket(root: Path) -> None:
    config = setup(root)
    daemon = Daemon(config, root / "daemon.log")
    try:
        wait_for(lambda: "control.listening" in daemon.log_text(), what="control socket")
        state = root / "var"
        paths = sorted(state.rglob("*"))
        assert any(p.name.endswith(".sock") for p in paths)
        for path in [state, *paths]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_dir():
                assert mode == 0o700, f"{path} is {mode:04o}"
            elif path.is_socket():
                assert mode & 0o077 == 0, f"{path} is {mode:04o}"
            else:
                assert mode == 0o600, f"{path} is {mode:04o}"
        user = _other_user()
        for path in [state, *paths]:
            probe = "test -r {0} || test -x {0} || test -w {0}".format(f"'{path}'")
            if path.is_socket():
                probe = f"test -e '{path}'"
            done = subprocess.run(
                ["runuser", "-u", user, "--", "sh", "-c", probe], timeout=30, check=False
            )
            assert done.returncode != 0, f"{user} can reach {path}"
    finally:
        assert daemon.stop() == 0, daemon.log_text()
