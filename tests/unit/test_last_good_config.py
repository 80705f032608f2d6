"""Read-only commands keep working on the last good configuration the daemon runs while the file
on disk has errors, and say so; commands that change something still refuse the broken file."""

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.commands.report import report_in_process
from guardmail.config.settings import load_config
from guardmail.control.report import ReportRequest
from guardmail.daemon.lastgood import LAST_GOOD_FILE, recall
from guardmail.daemon.supervisor import Daemon

CONFIG = """\
state_dir: {state_dir}
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
"""
MAIL = b"From: Stalker <stalker@example.net>\r\nSubject: you again\r\n\r\nbody\r\n"


class Running:
    """A daemon's view of one config file: started (recording the last good config), one item
    archived, and status.json published as a running daemon does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded = load_config(path)
        self.daemon = Daemon(self.loaded)

    def start(self) -> None:
        assert self.daemon.reload()  # a successful load records what the daemon runs
        request = ReportRequest(raw=MAIL, user="victim", uid=1000)
        report_in_process(self.loaded, request)
        self.daemon.board.write(self.loaded.settings.state_dir)

    def close(self) -> None:
        self.daemon.tenant.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(state_dir=tmp_path / "var"))
    r = Running(path)
    r.start()
    yield r
    r.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_uses_the_last_good_config_and_names_the_errors_in_the_file(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    running.path.write_text(running.path.read_text() + "colour: red\n")
    code, out, err = run(capsys, "-c", str(running.path), "status")
    assert code == 0, err
    assert "daemon: running" in out
    assert "vault default: 2 entries, intact" in out  # archived, action
    assert f"guardmail: WARNING: {running.path} has errors" in err
    assert "uses the last good configuration the daemon loaded, at " in err
    assert f"  {running.path}:5:1: colour: unknown key 'colour'" in err


def test_evidence_list_uses_the_last_good_config_while_the_file_has_errors(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    running.path.write_text(running.path.read_text().replace("stalker@", "stalker-at-"))
    code, out, err = run(capsys, "-c", str(running.path), "evidence", "list", "--json")
    assert code == 0, err
    [entry] = [json.loads(line) for line in out.splitlines()]
    assert (entry["seq"], entry["offender"]) == (1, "Example Offender")
    assert f"  {running.path}:4:17: offenders.0.addresses.0: " in err


def test_a_file_that_no_longer_parses_falls_back_through_the_default_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(state_dir="./var"))
    r = Running(path)
    try:
        r.start()
        path.write_text("offenders: [\n")  # not YAML any more: state_dir cannot be read
        code, out, err = run(capsys, "-c", "guardmail.yaml", "evidence", "list")
    finally:
        r.close()
    assert code == 0, err
    assert "Example Offender" in out
    assert "guardmail.yaml:2:1: (yaml): " in err


def test_commands_that_change_something_still_refuse_the_broken_file(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    running.path.write_text(running.path.read_text() + "colour: red\n")
    code, _, err = run(capsys, "-c", str(running.path), "check-config")
    assert code == 2 and "WARNING" not in err
    code, _, err = run(capsys, "-c", str(running.path), "warn", "Example Offender", "--dry-run")
    assert code == 2 and "colour: unknown key" in err


def test_without_a_last_good_record_a_broken_file_is_still_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(state_dir=tmp_path / "var") + "colour: red\n")
    code, _, err = run(capsys, "-c", str(path), "evidence", "list")
    assert code == 2
    assert "colour: unknown key" in err and "WARNING" not in err


def test_the_record_is_private_and_only_for_the_config_file_it_was_made_from(
    running: Running, tmp_path: Path
) -> None:
    state_dir = running.loaded.settings.state_dir
    record = state_dir / LAST_GOOD_FILE
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    last = recall(running.path, state_dir)
    assert last is not None
    assert last.config.settings == running.loaded.settings
    other = tmp_path / "other.yaml"
    other.write_text(running.path.read_text())
    assert recall(other, state_dir) is None


def test_a_rejected_reload_keeps_the_last_good_record(running: Running) -> None:
    state_dir = running.loaded.settings.state_dir
    before = (state_dir / LAST_GOOD_FILE).read_bytes()
    running.path.write_text(running.path.read_text() + "colour: red\n")
    assert not running.daemon.reload()
    assert (state_dir / LAST_GOOD_FILE).read_bytes() == before
    assert datetime.now(UTC) >= datetime.fromisoformat(json.loads(before)["loaded_at"])
