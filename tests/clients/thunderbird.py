"""Thunderbird from Debian with a throwaway profile: one IMAP account, the guardmail add-on
sideloaded, no first-run wizard (shared/recipes/thunderbird.md, steps 3 to 5)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

THUNDERBIRD = shutil.which("thunderbird")

USER_JS = """\
user_pref("extensions.autoDisableScopes", 0);
user_pref("extensions.enabledScopes", 15);
user_pref("xpinstall.signatures.required", false);
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mail.provider.enabled", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mailnews.start_page_override.mstone", "ignore");
user_pref("mail.inappnotifications.enabled", false);
user_pref("app.donation.eoy.version.viewed", 999);
user_pref("mail.rights.version", 1);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("app.update.auto", false);
user_pref("extensions.update.enabled", false);
user_pref("toolkit.startup.max_resumed_crashes", -1);
user_pref("mail.biff.show_alert", false);
user_pref("marionette.port", {marionette_port});
user_pref("devtools.console.stdout.chrome", true);
user_pref("devtools.console.stdout.content", true);
user_pref("mail.accountmanager.accounts", "account2,account1");
user_pref("mail.accountmanager.defaultaccount", "account2");
user_pref("mail.accountmanager.localfoldersserver", "server1");
user_pref("mail.account.account1.server", "server1");
user_pref("mail.server.server1.type", "none");
user_pref("mail.server.server1.hostname", "Local Folders");
user_pref("mail.server.server1.userName", "nobody");
user_pref("mail.server.server1.name", "Local Folders");
user_pref("mail.account.account2.server", "server2");
user_pref("mail.account.account2.identities", "id1");
user_pref("mail.server.server2.type", "imap");
user_pref("mail.server.server2.hostname", "127.0.0.1");
user_pref("mail.server.server2.port", {imap_port});
user_pref("mail.server.server2.userName", "{user}");
user_pref("mail.server.server2.name", "{user}@test");
user_pref("mail.server.server2.socketType", 0);
user_pref("mail.server.server2.authMethod", 3);
user_pref("mail.server.server2.login_at_startup", false);
user_pref("mail.server.server2.check_new_mail", false);
user_pref("mail.identity.id1.useremail", "{user}@example.org");
user_pref("mail.identity.id1.fullName", "Victim");
user_pref("mail.identity.id1.valid", true);
"""


def make_profile(
    profile: Path, *, xpi: Path, extension_id: str, imap_port: int, user: str, marionette_port: int
) -> None:
    (profile / "extensions").mkdir(parents=True)
    shutil.copy(xpi, profile / "extensions" / f"{extension_id}.xpi")
    (profile / "user.js").write_text(
        USER_JS.replace("{marionette_port}", str(marionette_port))
        .replace("{imap_port}", str(imap_port))
        .replace("{user}", user)
    )


def launch(
    profile: Path, *, home: Path, log: Path, display: str | None = None
) -> subprocess.Popen[bytes]:
    """Thunderbird with Marionette, headless or on ``display`` (an X server such as Xvfb, for
    screenshots); stop it with Marionette.quit, then by its PID."""
    assert THUNDERBIRD is not None
    mode = ["--headless"] if display is None else []
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if display is not None:
        env["DISPLAY"] = display
    command = [THUNDERBIRD, "-profile", str(profile), "-no-remote", *mode, "--marionette"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "-remote-allow-system-access"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
