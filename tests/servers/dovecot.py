"""A private Dovecot (IMAP + LMTP) in a temporary directory, as in shared/recipes/postgres-sieve.md.

Runs as root with mail owned by the ``dovecot`` user; the directory is 0755 because Dovecot's
processes must traverse it (a 0700 tmp_path gives "Temporary authentication failure").
"""

from __future__ import annotations

import imaplib
import pwd
import shutil
import smtplib
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.ports import free_ports, wait_for_banner

DOVECOT = "/usr/sbin/dovecot"

CONF = """\
instance_name = gmtest-{name}
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
{extra}
"""


@dataclass
class Dovecot:
    root: Path
    imap_port: int
    lmtp_port: int
    proc: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user

    def deliver(self, rcpt: str, raw: bytes, sender: str = "sender@example.net") -> None:
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            refused = lmtp.sendmail(sender, [rcpt], raw)
        assert not refused, refused

    def imap(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        conn.login(user, self.users[user])
        return conn

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def start_dovecot(users: dict[str, str], *, extra_conf: str = "") -> Dovecot:
    if not Path(DOVECOT).exists():
        raise AssertionError(f"{DOVECOT} missing: run scripts/system-packages.sh as root")
    root = Path(tempfile.mkdtemp(prefix="gm-dc-"))
    root.chmod(0o755)
    dovecot_user = pwd.getpwnam("dovecot")
    for sub in ("home", "mail", "run"):
        (root / sub).mkdir()
    for sub in ("home", "mail"):
        shutil.chown(root / sub, "dovecot", "dovecot")
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()))
    imap_port, lmtp_port = free_ports(2)
    conf = root / "dovecot.conf"
    conf.write_text(
        CONF.format(
            name=root.name,
            root=root,
            uid=dovecot_user.pw_uid,
            imap_port=imap_port,
            lmtp_port=lmtp_port,
            extra=extra_conf,
        )
    )
    with (root / "dovecot.stdout").open("wb") as out:
        proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Dovecot(root=root, imap_port=imap_port, lmtp_port=lmtp_port, proc=proc, users=users)
    try:
        wait_for_banner(imap_port)
        wait_for_banner(lmtp_port)
    except AssertionError:
        printed = (root / "dovecot.stdout").read_text(errors="replace")
        server.stop()
        raise AssertionError(f"dovecot did not start: {printed}") from None
    return server
