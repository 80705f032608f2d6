"""A private Prosody in a temporary directory (shared/FIELD-NOTES.md, Prosody section), and a raw
XMPP peer that writes exact bytes and reads whole stanzas.

The server runs as root (``run_as_root``) with its data, certificate, pid and log inside the
directory, listens on free loopback ports (c2s with STARTTLS offered but not required, and a
direct-TLS port), and loads no mod_limits. Accounts are written straight into the data
directory (internal_hashed SCRAM records), so hundreds cost no prosodyctl runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import trustme

from guardmail.channels.xmpp.tee import StanzaSlicer
from tests.servers.certs import Flaw, issue
from tests.servers.ports import free_ports, wait_for_port
from tests.servers.process import halt

PROSODY = "/usr/bin/prosody"
DOMAIN = "localhost"
MUC = "conference.localhost"

CONF = """\
run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}/certs"
log = {{ {level} = "{root}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ {tls_port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "blocklist"; "carbons"; "mam";
    "offline"; {tls_module} }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
ssl = {{ certificate = "{root}/server.crt"; key = "{root}/server.key" }}
c2s_stanza_size_limit = 10485760
{extra}
VirtualHost "{domain}"
Component "{muc}" "muc"
"""

STREAM = (
    "<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


def account_record(password: str, *, iterations: int = 10_000) -> str:
    """Prosody's internal_hashed account file for ``password`` (SCRAM-SHA-1 keys; 10,000
    iterations like ``prosodyctl register``)."""
    salt = str(uuid.uuid4())
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", "sha1").digest()
    return (
        "return {\n"
        f'\t["stored_key"] = "{hashlib.sha1(client_key).hexdigest()}";\n'
        f'\t["salt"] = "{salt}";\n'
        f'\t["server_key"] = "{hmac.new(salted, b"Server Key", "sha1").hexdigest()}";\n'
        f'\t["iteration_count"] = {iterations};\n'
        "};\n"
    )


@dataclass
class Prosody:
    root: Path
    port: int  # plain c2s (STARTTLS offered)
    tls_port: int  # direct TLS c2s
    proc: subprocess.Popen[bytes]
    ca_file: Path
    users: dict[str, str] = field(default_factory=dict)

    def register(self, user: str, password: str) -> None:
        """Create (or reset) an account; takes effect at once, even while running."""
        _write_account(self.root, user, password)
        self.users[user] = password

    def peer(self, user: str, *, resource: str = "peer", priority: int | None = 0) -> Peer:
        return Peer.login(self.port, user, self.users[user], resource=resource, priority=priority)

    def log(self) -> str:
        path = self.root / "prosody.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def halt(self) -> None:
        """Stop the server process (its files stay, for a restart)."""
        halt(self.proc)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same data."""
        self.halt()
        self.proc = _spawn(self.root)
        _wait_ready(self)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


def _write_account(root: Path, user: str, password: str) -> None:
    accounts = root / "data" / DOMAIN / "accounts"
    accounts.mkdir(parents=True, exist_ok=True)
    # Prosody's datamanager escapes node names like this (%XX for anything unusual).
    (accounts / f"{quote(user, safe='')}.dat").write_text(account_record(password))


def _spawn(root: Path) -> subprocess.Popen[bytes]:
    with (root / "prosody.stdout").open("ab") as out:
        return subprocess.Popen(
            [PROSODY, "--config", str(root / "prosody.cfg.lua"), "-F"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )


def _wait_ready(server: Prosody) -> None:
    try:
        wait_for_port(server.port)
        wait_for_port(server.tls_port)
    except AssertionError:
        printed = (server.root / "prosody.stdout").read_text(errors="replace")
        server.stop()
        raise AssertionError(f"prosody did not start: {printed}") from None


def start_prosody(
    users: dict[str, str],
    *,
    log_level: str = "info",
    starttls: bool = True,
    extra: str = "",
    cert_flaw: Flaw = "none",
) -> Prosody:
    """Prosody on loopback with a certificate for ``localhost`` from a CA made for the test.

    ``starttls=False`` leaves mod_tls out: STARTTLS is not offered (direct TLS still works).
    ``extra``: more global settings (Lua).
    """
    if not Path(PROSODY).exists():
        raise AssertionError(f"{PROSODY} missing: run scripts/system-packages.sh as root")
    root = Path(tempfile.mkdtemp(prefix="gm-pr-"))
    root.chmod(0o755)
    (root / "data").mkdir()
    (root / "certs").mkdir()
    ca = trustme.CA()
    cert = issue(ca, DOMAIN, flaw=cert_flaw)
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port, tls_port = free_ports(2)
    (root / "prosody.cfg.lua").write_text(
        CONF.format(
            root=root,
            port=port,
            tls_port=tls_port,
            domain=DOMAIN,
            muc=MUC,
            level=log_level,
            tls_module='"tls"' if starttls else "",
            extra=extra,
        )
    )
    for user, password in users.items():
        _write_account(root, user, password)
    server = Prosody(
        root=root,
        port=port,
        tls_port=tls_port,
        proc=_spawn(root),
        ca_file=ca_file,
        users=dict(users),
    )
    _wait_ready(server)
    return server


class Peer:
    """Someone else's client on plain loopback c2s: exact bytes out, whole stanzas in."""

    def __init__(self, sock: socket.socket, jid: str) -> None:
        self.sock = sock
        self.jid = jid  # full JID once bound
        self._slicer = StanzaSlicer()
        self._pending: list[bytes] = []

    @classmethod
    def login(
        cls, port: int, user: str, password: str, *, resource: str, priority: int | None
    ) -> Peer:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        peer = cls(sock, f"{user}@{DOMAIN}")
        peer._open()
        peer.expect(b"<stream:features")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        peer.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        peer.expect(b"<success")
        peer._slicer = StanzaSlicer()
        peer._open()
        peer.expect(b"<stream:features")
        peer.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        bound = peer.expect(b"id='bind'")
        peer.jid = bound.split(b"<jid>")[1].split(b"</jid>")[0].decode()
        peer.iq("<query xmlns='jabber:iq:roster'/>", kind="get")
        if priority is not None:
            peer.send(f"<presence><priority>{priority}</priority></presence>")
        return peer

    def _open(self) -> None:
        self.sock.sendall(STREAM.format(domain=DOMAIN).encode())

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def iq(self, payload: str, *, kind: str = "set", to: str | None = None) -> bytes:
        ident = uuid.uuid4().hex[:8]
        target = f" to='{to}'" if to else ""
        self.send(f"<iq type='{kind}' id='{ident}'{target}>{payload}</iq>")
        answer = self.expect(f"id='{ident}'".encode(), f'id="{ident}"'.encode())
        assert b"type='error'" not in answer and b'type="error"' not in answer, answer
        return answer

    def enable_carbons(self) -> None:
        self.iq("<enable xmlns='urn:xmpp:carbons:2'/>")

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise ConnectionError("server closed the stream")
        self._pending += [s.raw for s in self._slicer.feed(data)]

    def expect(self, *needles: bytes, timeout: float = 10.0) -> bytes:
        """The first stanza (already read or arriving) holding any of ``needles``; it and the
        stanzas before it are consumed."""
        deadline = time.monotonic() + timeout
        while True:
            for i, raw in enumerate(self._pending):
                if any(n in raw for n in needles):
                    del self._pending[: i + 1]
                    return raw
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no stanza with {needles} within {timeout}s")
            self._read(min(left, 0.2))

    def drain(self, quiet: float = 0.5) -> list[bytes]:
        """Every stanza that arrives until the stream is quiet for ``quiet`` seconds."""
        before = -1
        while before != len(self._pending):
            before = len(self._pending)
            self._read(quiet)
        got, self._pending = self._pending, []
        return got

    def close(self) -> None:
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass
