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

import trustme

from tests.servers.certs import Flaw, issue
from tests.servers.ports import free_ports, wait_for_banner, wait_for_port
from tests.servers.process import halt

DOVECOT = "/usr/sbin/dovecot"
DH_FILE = "/usr/share/dovecot/dh.pem"

CONF = """\
instance_name = gmtest-{name}
protocols = {protocols}
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/dovecot.log
{ssl}
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
    address = 127.0.0.1
    port = {imaps_port}
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


SIEVE_CONF = """\
lda_mailbox_autosubscribe = yes
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {sieve_port}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""


# Dovecot's oauth2 passdb asking an introspection endpoint (RFC 7662) served by the test; the
# password passdb stays for the other users. Trusted loopback: no auth penalty after a refusal.
OAUTH2_CONF = """\
auth_mechanisms = plain login xoauth2 oauthbearer
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
"""
OAUTH2_EXT = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""


@dataclass
class Dovecot:
    root: Path
    imap_port: int
    lmtp_port: int
    proc: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=dict)
    imaps_port: int = 0
    ca_file: Path | None = None  # PEM of the CA that signed the server certificate
    sieve_port: int = 0  # ManageSieve, when started with sieve=True

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user

    def deliver(self, rcpt: str, raw: bytes, sender: str = "sender@example.net") -> None:
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            refused = lmtp.sendmail(sender, [rcpt], raw)
        assert not refused, refused

    def imap(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        password = self.users[user]
        if password.isascii():
            conn.login(user, password)
        else:  # LOGIN is ASCII only: SASL PLAIN carries UTF-8
            conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
        return conn

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def doveadm(self, *args: str) -> str:
        done = subprocess.run(
            ["doveadm", "-c", str(self.root / "dovecot.conf"), *args],
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout.decode()

    def halt(self) -> None:
        """Stop the server process (its files stay, for a restart)."""
        halt(self.proc)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail."""
        self.halt()
        self.proc = _spawn(self.root)
        _wait_ready(self)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def _spawn(root: Path) -> subprocess.Popen[bytes]:
    with (root / "dovecot.stdout").open("ab") as out:
        return subprocess.Popen(
            [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(server: Dovecot) -> None:
    try:
        wait_for_banner(server.imap_port)
        wait_for_banner(server.lmtp_port)
        if server.imaps_port:
            wait_for_port(server.imaps_port)
        if server.sieve_port:
            wait_for_banner(server.sieve_port)
    except AssertionError:
        printed = (server.root / "dovecot.stdout").read_text(errors="replace")
        server.stop()
        raise AssertionError(f"dovecot did not start: {printed}") from None


def start_dovecot(
    users: dict[str, str],
    *,
    extra_conf: str = "",
    tls: bool = False,
    sieve: bool = False,
    cert_flaw: Flaw = "none",
    introspection_url: str | None = None,
) -> Dovecot:
    """Dovecot with IMAP and LMTP on loopback; with ``tls``, also IMAPS with a test CA;
    with ``sieve``, Pigeonhole Sieve at LMTP delivery and ManageSieve; with
    ``introspection_url``, SASL XOAUTH2 and OAUTHBEARER checked against that endpoint."""
    if not Path(DOVECOT).exists():
        raise AssertionError(f"{DOVECOT} missing: run scripts/system-packages.sh as root")
    root = Path(tempfile.mkdtemp(prefix="gm-dc-"))
    root.chmod(0o755)
    dovecot_user = pwd.getpwnam("dovecot")
    for sub in ("home", "mail", "run"):
        (root / sub).mkdir()
    for sub in ("home", "mail"):
        shutil.chown(root / sub, "dovecot", "dovecot")
    (root / "users").write_text(
        "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in users.items()), encoding="utf-8"
    )
    if introspection_url is not None:
        (root / "oauth2.conf.ext").write_text(OAUTH2_EXT.format(url=introspection_url))
        extra_conf = OAUTH2_CONF.format(root=root) + extra_conf
    imap_port, lmtp_port, imaps_port, sieve_port = free_ports(4)
    protocols = "imap lmtp"
    if sieve:
        protocols += " sieve"
        extra_conf = SIEVE_CONF.format(sieve_port=sieve_port) + extra_conf
    else:
        sieve_port = 0
    ssl_conf, ca_file = "ssl = no", None
    if tls:
        ca = trustme.CA()
        cert = issue(ca, "127.0.0.1", "localhost", flaw=cert_flaw)
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        ssl_conf = f"ssl = yes\nssl_cert = <{root}/server.pem\nssl_key = <{root}/server.pem\n" + (
            f"ssl_dh = <{DH_FILE}\n" if Path(DH_FILE).exists() else ""
        )
    else:
        imaps_port = 0
    conf = root / "dovecot.conf"
    conf.write_text(
        CONF.format(
            name=root.name,
            root=root,
            uid=dovecot_user.pw_uid,
            imap_port=imap_port,
            imaps_port=imaps_port,
            lmtp_port=lmtp_port,
            extra=extra_conf,
            ssl=ssl_conf,
            protocols=protocols,
        )
    )
    server = Dovecot(
        root=root,
        imap_port=imap_port,
        lmtp_port=lmtp_port,
        proc=_spawn(root),
        users=users,
        imaps_port=imaps_port,
        ca_file=ca_file,
        sieve_port=sieve_port,
    )
    _wait_ready(server)
    return server
