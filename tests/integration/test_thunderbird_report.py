"""plugins/thunderbird for real: Thunderbird from Debian, headless, a fresh profile with an IMAP
account on a private Dovecot and the add-on sideloaded. The add-on's own button is clicked (a
DOM click through Marionette, which runs messageDisplayAction.onClicked as a mouse click does);
the vault must then hold exactly Dovecot's bytes, the offenders file the sender, and the message
must have left the INBOX for Quarantine."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.control.nativehost import EXTENSION_ID
from tests.clients.marionette import Marionette
from tests.clients.thunderbird import THUNDERBIRD, launch, make_profile
from tests.conftest import wait_for
from tests.integration.guardmail_proc import guardmail
from tests.servers.dovecot import Dovecot, start_dovecot
from tests.servers.ports import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        THUNDERBIRD is None, reason="thunderbird is needed (scripts/system-packages.sh)"
    ),
]

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "thunderbird"
# Set to a path to run under Xvfb instead of headless and keep a screenshot of the window after
# the click (plugins/thunderbird/screenshot.png was made so).
SCREENSHOT = os.environ.get("GUARDMAIL_TB_SCREENSHOT")
BUTTON = EXTENSION_ID.replace("@", "_").replace(".", "_") + "-messageDisplayAction-toolbarbutton"

# CRLF, a folded header, raw UTF-8 in a header, an 8-bit body and a long line.
MESSAGE = (
    b"From: =?utf-8?q?St=C3=A4lker?= <stalker@evil.example>\r\n"
    b"To: victim@example.org\r\n"
    b"Subject: I see you\r\n"
    b"X-Folded: one\r\n two\r\n"
    b"X-Raw: caf\xc3\xa9\r\n"
    b"Message-ID: <tb-1@evil.example>\r\n"
    b"\r\n"
    b"\xe9t\xe9 latin-1 body\r\n" + b"x" * 1500 + b"\r\n"
)

CLICK = """
const [user, host, password, buttonId, click, done] = arguments;
const win = Services.wm.getMostRecentWindow("mail:3pane");
const sleep = (ms) => new Promise((resolve) => win.setTimeout(resolve, ms));
async function until(what, test, ms = 30000) {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) {
      throw new Error("timed out waiting for " + what);
    }
    await sleep(50);
  }
}
(async () => {
  const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
  const server = MailServices.accounts.findServer(user, host, "imap");
  server.password = password;
  await until("the 3-pane", () => win.gTabmail && win.gTabmail.currentAbout3Pane
    && win.gTabmail.currentAbout3Pane.displayFolder);
  const about3Pane = win.gTabmail.currentAbout3Pane;
  about3Pane.displayFolder(server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox));
  await until("the message list", () => about3Pane.gDBView && about3Pane.gDBView.rowCount > 0);
  about3Pane.threadTree.selectedIndex = 0;
  const am = about3Pane.messageBrowser.contentWindow;
  let button = null;
  // Also wait for the body to load: a click while it loads was seen to hang (recipe pitfall 7).
  await until("the add-on's button", () => {
    button = am.document && am.document.getElementById(buttonId);
    return am.gMessage && button && !button.hidden && !button.disabled
      && am.document.readyState === "complete"
      && !am.getMessagePaneBrowser().webProgress.isLoadingDocument;
  });
  if (!click) {
    return "ready";
  }
  button.click();
  return "clicked";
})().then(done, (error) => done("error: " + error));
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"victim": "secret"})
    try:
        yield server
    finally:
        server.stop()


def imap_messages(server: Dovecot, folder: str) -> list[bytes]:
    conn = server.imap("victim")
    try:
        status, _ = conn.select(folder, readonly=True)
        if status != "OK":
            return []
        _, data = conn.uid("SEARCH", "ALL")
        uids = data[0].split() if data and data[0] else []
        found = []
        for uid in uids:
            _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            part = fetched[0]
            assert isinstance(part, tuple)
            found.append(part[1])
        return found
    finally:
        conn.logout()


def test_thunderbird_button_archives_dovecots_bytes_and_moves_to_quarantine(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    dovecot.deliver("victim", MESSAGE)
    (served,) = imap_messages(dovecot, "INBOX")
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f'state_dir: {tmp_path}/var\noffenders_files: ["{tmp_path}/offenders.d/*.yaml"]\n'
    )
    home = tmp_path / "home"
    installed = guardmail(config, "install-client", "thunderbird", "--home", str(home))
    assert installed.returncode == 0, installed.stderr
    build = subprocess.run([str(PLUGIN / "build-xpi.sh")], capture_output=True, check=True)
    xpi = Path(build.stdout.decode().strip())
    (marionette_port,) = free_ports(1)
    profile = tmp_path / "profile"
    make_profile(
        profile,
        xpi=xpi,
        extension_id=EXTENSION_ID,
        imap_port=dovecot.imap_port,
        user="victim",
        marionette_port=marionette_port,
    )
    log = tmp_path / "thunderbird.log"
    xvfb = None
    display = None
    if SCREENSHOT:
        display = f":{70 + os.getpid() % 20}"
        xvfb = subprocess.Popen(
            ["Xvfb", display, "-screen", "0", "1400x1000x24", "-nolisten", "tcp"]
        )
    proc = launch(profile, home=home, log=log, display=display)
    try:
        client = Marionette(marionette_port)
        try:
            if SCREENSHOT:  # the message displayed, with the add-on's button above it
                ready = client.run_async(CLICK, ["victim", "127.0.0.1", "secret", BUTTON, False])
                assert ready == "ready", log.read_text(errors="replace")[-3000:]
                shot = ["import", "-display", str(display), "-window", "root", SCREENSHOT]
                subprocess.run(shot, check=True, timeout=30)
            clicked = client.run_async(CLICK, ["victim", "127.0.0.1", "secret", BUTTON, True])
            assert clicked == "clicked", log.read_text(errors="replace")[-3000:]

            def listed() -> list[str]:
                return guardmail(config, "evidence", "list", "--json").stdout.decode().splitlines()

            wait_for(lambda: bool(listed()), timeout=60, what="the vault entry")
            wait_for(lambda: not imap_messages(dovecot, "INBOX"), timeout=60, what="INBOX emptied")
        finally:
            client.quit()
    finally:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=10)
    (entry,) = [json.loads(line) for line in listed()]
    assert entry["sha256"] == hashlib.sha256(served).hexdigest()
    assert guardmail(config, "evidence", "show", str(entry["seq"])).stdout == served
    assert entry["offender"] == "stalker@evil.example"
    reported = (tmp_path / "offenders.d" / "reported.yaml").read_text()
    assert "- stalker@evil.example" in reported
    assert imap_messages(dovecot, "Quarantine") == [served]
    assert "guardmail: Kept as evidence" in log.read_text(errors="replace")
