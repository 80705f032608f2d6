"""Tampering with the state files directly (SQLite, blobs, HEAD) is named, never believed.

Each test edits the files as someone with write access to the state directory would, then runs
the ``guardmail`` command a person would run.
"""

import contextlib
import hashlib
import io
import json
import os
import pwd
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.config.settings import load_config
from guardmail.daemon.tenant import DB_FILE, Tenant, open_tenant
from guardmail.vault.journal import GENESIS, canonical_json, chain_hash, entry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = """\
state_dir: {root}/var
tenant: jane
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
    action: quarantine
"""


def mail(n: int) -> bytes:
    return f"From: stalker@example.net\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()


class Case:
    def __init__(self, root: Path) -> None:
        self.config = root / "guardmail.yaml"
        self.config.write_text(CONFIG.format(root=root))
        self.settings = load_config(self.config).settings
        self.db = self.settings.state_dir / DB_FILE

    def tenant(self) -> Tenant:
        return open_tenant(self.settings)

    def fill(self, n: int) -> list[str]:
        tenant = self.tenant()
        try:
            receipts = [
                tenant.vault.put(
                    mail(i), source_ref=f"new/{i}", metadata={"offender": "x"}, now=NOW
                )
                for i in range(n)
            ]
            for r in receipts:
                tenant.vault.record("action", {"archived_seq": r.seq, "done": "moved"}, now=NOW)
            return [r.sha256 for r in receipts]
        finally:
            tenant.close()

    def blob(self, sha: str) -> Path:
        return self.settings.state_dir / "vault" / "jane" / "blobs" / sha[:2] / sha

    def sql(self, statement: str, *params: object) -> None:
        conn = sqlite3.connect(self.db)
        with conn:
            conn.execute(statement, params)
        conn.close()

    def cli(self, capsys: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
        code = main(["-c", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err.decode()


@pytest.fixture
def case(tmp_path: Path) -> Iterator[Case]:
    yield Case(tmp_path)


def test_blob_column_pointed_at_a_forgery_is_named_and_never_shown_or_exported(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    original = case.fill(1)[0]
    forged = b"From: someone-else@example.org\r\n\r\nforged\r\n"
    forged_sha = hashlib.sha256(forged).hexdigest()
    case.blob(forged_sha).parent.mkdir(parents=True, exist_ok=True)
    case.blob(forged_sha).write_bytes(forged)
    case.blob(original).unlink()
    case.sql("UPDATE journal SET sha256 = ? WHERE seq IN (1, 2)", forged_sha)

    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1
    assert "entry 1: column sha256 is" in err and f"blob {original} missing" in err
    code, out, err = case.cli(capsysbinary, "evidence", "show", "1")
    assert code == 2 and b"forged" not in out and f"blob {original} is missing" in err
    code, _, err = case.cli(capsysbinary, "evidence", "export", "--out", str(tmp_path / "b"))
    assert code != 0 and original in err and not (tmp_path / "b").exists()


def test_archived_row_relabelled_as_an_action_stays_listed_and_is_named(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    sha = case.fill(2)[0]
    case.sql("UPDATE journal SET kind = 'action' WHERE seq = 1")
    case.blob(sha).unlink()

    code, out, _ = case.cli(capsysbinary, "evidence", "list", "--json")
    assert code == 0 and out.count(b'"seq"') == 2 and b'"seq": 1,' in out
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1
    assert "entry 1: column kind is 'action' but the hashed entry says 'archived'" in err
    assert f"blob {sha} missing" in err


def test_blob_name_leading_out_of_the_vault_is_never_opened(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.fill(1)
    escape = "../../../../../../../../etc/hostname"
    # The column alone: ignored (the hashed entry names the real blob), and named by verify.
    case.sql("UPDATE journal SET sha256 = ? WHERE seq = 1", escape)
    code, out, _ = case.cli(capsysbinary, "evidence", "show", "1")
    assert code == 0 and out == mail(0)
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1 and "column sha256" in err
    # The whole chain and HEAD rewritten consistently to name it: still never opened.
    conn = sqlite3.connect(case.db)
    body, prev = conn.execute("SELECT body, prev_hash FROM journal WHERE seq = 1").fetchone()
    conn.close()
    value = entry_of(body)
    value["sha256"] = escape
    new_body = canonical_json(value)
    new_hash = chain_hash(GENESIS, new_body)
    case.sql("DELETE FROM journal WHERE seq > 1")
    case.sql("UPDATE journal SET body = ?, hash = ? WHERE seq = 1", new_body, new_hash)
    (case.settings.state_dir / "vault" / "jane" / "HEAD").write_text(f"1 {new_hash}\n")
    code, out, err = case.cli(capsysbinary, "evidence", "show", "1")
    assert code == 2 and out == b"" and "is not a SHA-256" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1 and "not a SHA-256" in err


def entry_of(body: str) -> dict[str, object]:
    from guardmail.storage.base import JournalRow

    row = JournalRow(tenant="jane", seq=1, kind="archived", body=body, prev_hash="", hash="")
    return entry(row)


def test_journal_tail_cut_and_head_deleted_is_named_even_after_the_next_archive(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.fill(3)
    case.sql("DELETE FROM journal WHERE seq > 4")
    (case.settings.state_dir / "vault" / "jane" / "HEAD").unlink()
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1 and "HEAD is missing but the journal has entries up to 4" in err
    # The daemon archiving the next item rewrites HEAD, but must not hide what it found.
    tenant = case.tenant()
    try:
        tenant.vault.put(mail(9), source_ref="new/9", metadata={}, now=NOW)
    finally:
        tenant.close()
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 1 and "TAMPERED: HEAD missing while the journal has 4 entries" in err


def test_brand_new_vault_verifies_and_its_first_entries_too(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert case.cli(capsysbinary, "evidence", "verify")[0] == 0
    case.fill(2)
    code, out, _ = case.cli(capsysbinary, "evidence", "verify")
    assert code == 0 and b"5 entries intact" in out  # the first verify is entry 1 (custody)


def test_corrupt_head_is_one_line_naming_the_file_exit_2(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.fill(1)
    head = case.settings.state_dir / "vault" / "jane" / "HEAD"
    head.write_bytes(b"two \xff\n")
    code, _, err = case.cli(capsysbinary, "evidence", "verify")
    assert code == 2 and str(head) in err and "not a HEAD witness" in err
    assert len(err.strip().splitlines()) == 1


def test_non_integer_seq_in_the_journal_is_one_line_naming_the_file_exit_2(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.fill(1)
    case.sql("UPDATE journal SET seq = 'one' WHERE seq = 1")
    for command in (["evidence", "list"], ["evidence", "verify"]):
        code, _, err = case.cli(capsysbinary, *command)
        assert code == 2 and str(case.db) in err and "seq 'one', not an integer" in err
        assert len(err.strip().splitlines()) == 1


def test_state_file_that_is_not_sqlite_is_one_line_naming_it_exit_2(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.settings.state_dir.mkdir(parents=True)
    case.db.write_bytes(b"this is not a database, it is a text file\n" * 100)
    code, _, err = case.cli(capsysbinary, "evidence", "list")
    assert code == 2 and str(case.db) in err and "not a guardmail SQLite database" in err
    assert len(err.strip().splitlines()) == 1


def as_another_user(args: list[str]) -> tuple[int, str]:
    """``main(args)`` in a child process that is not root (``nobody`` when we are root)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(args)
            os.write(write, json.dumps([code, err.getvalue()]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, err = json.loads(data)
    return int(code), str(err)


def test_cli_run_by_a_user_without_access_is_one_line_naming_the_file_exit_2() -> None:
    root = Path(tempfile.mkdtemp(prefix="gm-perm-", dir="/tmp"))
    try:
        root.chmod(0o755)
        case = Case(root)
        case.fill(1)
        case.config.chmod(0o644)
        case.settings.state_dir.chmod(0o000)
        code, err = as_another_user(["-c", str(case.config), "evidence", "list"])
        assert code == 2, err
        assert err.startswith(f"guardmail: {case.settings.state_dir}")
        assert "permission denied" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        shutil.rmtree(root)


def test_state_dir_that_is_a_file_is_one_line_naming_it_exit_2(
    case: Case, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    case.settings.state_dir.write_text("not a directory\n")
    code, _, err = case.cli(capsysbinary, "evidence", "list")
    assert code == 2 and f"{case.settings.state_dir}: exists but is not a directory" in err
    assert len(err.strip().splitlines()) == 1
