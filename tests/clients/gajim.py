"""Gajim from Debian under Xvfb with a pre-seeded profile (shared/recipes/gajim.md).

Gajim refuses to run as root, so everything here runs as ``nobody`` (no user is created):
Xvfb, a private session bus (Gajim's app actions are called over it) and Gajim itself, all with
files in one directory that ``nobody`` owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from tests.conftest import wait_for

GAJIM = shutil.which("gajim")
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "nobody"

# Gajim's own Settings class writes settings.sqlite, so the schema and migrations stay right.
SEED = """
import sys
from gajim.common import configpaths
root, account, host, password, server, port = sys.argv[1:7]
configpaths.set_config_root(root)
configpaths.init()
configpaths.create_paths()
from gajim.common import app
from gajim.common.settings import Settings
app.settings = Settings()
app.settings.init()
app.settings.add_account(account)
for key, value in {
    "name": account, "hostname": host, "resource": "gajim.test",
    "account_label": f"{account}@{host}", "anonymous_auth": False,
    "use_custom_host": True, "custom_host": server, "custom_port": int(port),
    "custom_type": "PLAIN", "use_plain_connection": True,
    "confirm_unencrypted_connection": False, "password": password, "savepass": True,
    "active": True, "autoconnect": True,
}.items():
    app.settings.set_account_setting(account, key, value)
for key, value in {
    "use_keyring": False, "check_for_update": False, "show_help_start_chat": False,
    "show_main_window_on_startup": "always",
}.items():
    app.settings.set_app_setting(key, value)
app.settings.set_plugin_setting("guardmail_report", "active", True)
app.settings.save()
"""


def as_user(*command: str, env: dict[str, str]) -> list[str]:
    return [
        "runuser",
        "-u",
        USER,
        "--",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        *command,
    ]


class GajimSession:
    """Xvfb, a session bus and Gajim as ``nobody`` in ``root``; ``stop()`` ends all three."""

    def __init__(self, root: Path, *, display: int) -> None:
        self.root = root
        self.display = f":{display}"
        self.bus = f"unix:path={root}/bus.sock"
        self.profile = root / "profile"
        self.log = root / "gajim.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        user = pwd.getpwnam(USER)
        self.env = {
            "HOME": str(root / "home"),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "NO_AT_BRIDGE": "1",
        }
        (root / "home").mkdir(parents=True, exist_ok=True)
        self.profile.mkdir(exist_ok=True)
        for path in (root, root / "home", self.profile):
            os.chown(path, user.pw_uid, user.pw_gid)

    def _spawn(self, *command: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                as_user(*command, env=env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def start_display(self) -> None:
        self._spawn(
            "Xvfb",
            self.display,
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
            log=self.root / "xvfb.log",
            env=self.env,
        )
        self._spawn(
            "dbus-daemon",
            "--session",
            f"--address={self.bus}",
            "--nofork",
            log=self.root / "dbus.log",
            env=self.env,
        )
        wait_for(lambda: (self.root / "bus.sock").exists(), what="the session bus")
        wait_for(lambda: Path(f"/tmp/.X11-unix/X{self.display[1:]}").exists(), what="Xvfb")

    def seed(self, *, account: str, host: str, password: str, port: int, plugin: Path) -> None:
        shutil.copytree(plugin, self.profile / "plugins" / plugin.name)
        user = pwd.getpwnam(USER)
        for path in [self.profile, *self.profile.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(
            as_user(
                SYSTEM_PYTHON,
                "-c",
                SEED,
                str(self.profile),
                account,
                host,
                password,
                "127.0.0.1",
                str(port),
                env=self.env,
            ),
            check=True,
            capture_output=True,
            timeout=60,
            cwd="/",
        )

    def start_gajim(self, extra_env: dict[str, str]) -> None:
        assert GAJIM is not None
        self._spawn(
            GAJIM,
            "-c",
            str(self.profile),
            "--show",
            "-l",
            "gajim.p=INFO",
            log=self.log,
            env={**self.env, **extra_env},
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def activate(self, action: str, argument: str) -> subprocess.CompletedProcess[str]:
        """Call a Gajim app action over D-Bus, as another program (or a person's script) would."""
        escaped = argument.replace("\\", "\\\\").replace("'", "\\'")
        variant = f"[<'{escaped}'>]"
        return subprocess.run(
            as_user(
                "gdbus",
                "call",
                "--session",
                "--dest",
                "org.gajim.Gajim",
                "--object-path",
                "/org/gajim/Gajim",
                "--method",
                "org.gtk.Actions.Activate",
                action,
                variant,
                "{}",
                env=self.env,
            ),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def screenshot(self, path: Path) -> None:
        subprocess.run(
            ["import", "-display", self.display, "-window", "root", str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )

    def stop(self) -> None:
        # SIGTERM makes Gajim quit cleanly (about 2 s); the quit action can stop at a dialog.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
