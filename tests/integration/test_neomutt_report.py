"""plugins/neomutt for real: neomutt from Debian in tmux on a Maildir, the macro pressed with
send-keys, the status line read with capture-pane, and the vault and the folders checked."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients.tmux import TMUX, Tmux
from tests.conftest import wait_for
from tests.integration.guardmail_proc import guardmail

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("neomutt") is None or TMUX is None,
        reason="neomutt and tmux are needed (scripts/system-packages.sh installs them)",
    ),
]

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "neomutt"

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Known
    addresses: [known@example.net]
offenders_files: ["{root}/offenders.d/*.yaml"]
"""

MUTTRC = """\
set folder={root}/Mail
set spoolfile={root}/Mail
set mbox_type=Maildir
set tmpdir={root}/nmtmp
set sort=mailbox-order
set mark_old=no
set header_cache=""
set message_cachedir=""
set delete=yes
set move=no
set beep=no
set sleep_time=0
setenv GUARDMAIL_QUARANTINE "=.Quarantine"
source {plugin}/guardmail.muttrc
"""

# 8-bit header and body, a body line starting "From ", no final newline: neomutt pipes a
# Maildir file's LF bytes unchanged (shared/recipes/neomutt.md).
OFFENDER = (
    b"From: St\xc3\xa4lker <stalker@evil.example>\n"
    b"To: victim@example.org\n"
    b"Subject: I know where you are\n"
    b"Message-ID: <1@evil.example>\n"
    b"\n"
    b"From here on\n\xe9 latin-1 byte, trailing space \n"
)
NO_SENDER = b"Subject: no sender at all\nMessage-ID: <2@x.example>\n\nhello\n"


@dataclass
class Mutt:
    root: Path
    config: Path
    tmux: Tmux

    @property
    def maildir(self) -> Path:
        return self.root / "Mail"


@pytest.fixture
def mutt(tmp_path: Path) -> Iterator[Mutt]:
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    maildir = tmp_path / "Mail"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1000.a.host:2,S").write_bytes(OFFENDER)
    (maildir / "cur" / "1001.b.host:2,S").write_bytes(NO_SENDER)
    (tmp_path / "nmtmp").mkdir()
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(MUTTRC.format(root=tmp_path, plugin=PLUGIN))
    tmux = Tmux(tmp_path / "tmux.sock")
    env = {
        "PATH": f"{PLUGIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "TERM": "screen",
        "GUARDMAIL": f"{sys.executable} -m guardmail",
        "GUARDMAIL_CONFIG": str(config),
        "GUARDMAIL_NEOMUTT_STATE": str(tmp_path / "state" / "gm"),
    }
    try:
        tmux.start(["neomutt", "-n", "-F", str(muttrc)], env, cwd=tmp_path)
        tmux.wait_screen(lambda s: "Msgs:2" in s, what="neomutt's index")
        yield Mutt(root=tmp_path, config=config, tmux=tmux)
    finally:
        tmux.close()


def status_line(screen: str) -> str:
    lines = screen.rstrip("\n").splitlines()
    return lines[-1] if lines else ""


def test_macro_archives_the_exact_bytes_blocks_the_sender_and_moves_it(mutt: Mutt) -> None:
    mutt.tmux.keys("=", "M-b")  # first-entry, then Esc b
    screen = mutt.tmux.wait_screen(
        lambda s: "guardmail: reported as vault entry 1" in status_line(s), what="report shown"
    )
    assert "offender stalker@evil.example" in status_line(screen)
    shown = guardmail(mutt.config, "evidence", "show", "1")
    assert shown.returncode == 0 and shown.stdout == OFFENDER
    entry = json.loads(guardmail(mutt.config, "evidence", "list", "--json").stdout)
    assert entry["sha256"] == hashlib.sha256(OFFENDER).hexdigest()
    reported = (mutt.root / "offenders.d" / "reported.yaml").read_text()
    assert "- stalker@evil.example" in reported

    mutt.tmux.keys("q")  # quit: the saved message's original is purged (delete=yes)
    wait_for(mutt.tmux.dead, what="neomutt to quit")
    moved = [p for sub in ("cur", "new") for p in (mutt.maildir / ".Quarantine" / sub).iterdir()]
    assert len(moved) == 1
    # neomutt's copy gains a Content-Length header; the evidence has the original bytes.
    assert b"Subject: I know where you are" in moved[0].read_bytes()
    assert not (mutt.maildir / "cur" / "1000.a.host:2,S").exists()
    assert (mutt.maildir / "cur" / "1001.b.host:2,S").read_bytes() == NO_SENDER


def test_a_failed_report_is_shown_and_the_message_stays(mutt: Mutt) -> None:
    mutt.tmux.keys("=", "j", "M-b")  # the second message: no From
    screen = mutt.tmux.wait_screen(
        lambda s: "guardmail FAILED" in status_line(s), what="failure shown"
    )
    assert "(exit 2): guardmail: the message has no From address to block" in status_line(screen)
    mutt.tmux.keys("q")
    wait_for(mutt.tmux.dead, what="neomutt to quit")
    assert (mutt.maildir / "cur" / "1001.b.host:2,S").read_bytes() == NO_SENDER
    assert not (mutt.maildir / ".Quarantine").exists()
    assert guardmail(mutt.config, "evidence", "list", "--json").stdout == b""
