"""A local RFC 3161 time-stamping authority for tests: ``openssl ts -reply`` behind a tiny
loopback HTTP server, with a CA and a TSA certificate made here (extendedKeyUsage critical
timeStamping, as openssl's TSA requires). No network beyond 127.0.0.1.

Its tokens carry the TSA's certificate only (no ``certs =`` chain): openssl writes a token's
certificate SET in the order given, not DER's sorted order, and rfc3161-client (strict DER)
refuses such a token ("InvalidSetOrdering").

``TSA.down = True`` makes it answer 503; ``TSA.answer`` (bytes) is sent instead of a token (a
TSA that answers garbage, or too much); ``TSA.requests`` counts the queries it received. When
``openssl ts -reply`` fails, it answers 500 with openssl's own error as the reason, so that a
test that fails through it says why.
"""

from __future__ import annotations

import datetime
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificates(
    directory: Path, *, not_before: datetime.datetime | None = None, days: int = 30
) -> None:
    """ca.pem, tsa.pem, tsa.key and serial in ``directory``."""
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("guardmail test TSA root"))
        .issuer_name(_name("guardmail test TSA root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name("guardmail test TSA"))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.key").write_bytes(_pem_key(tsa_key))
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(_CONFIG.format(dir=directory))


class TSA:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.down = False
        self.answer: bytes | None = None
        self.requests = 0
        self._lock = threading.Lock()
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                query = self.rfile.read(length)
                with tsa._lock:
                    tsa.requests += 1
                    try:
                        reply = None if tsa.down else tsa.answer or tsa.reply(query)
                    except subprocess.CalledProcessError as exc:
                        lines = exc.stderr.decode("ascii", "replace").strip().splitlines()
                        why = "; ".join(lines[:2])[:200].encode("ascii", "replace").decode()
                        self.send_response(500, f"openssl ts -reply failed: {why}")
                        self.end_headers()
                        return
                if reply is None:
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsr"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def reply(self, query: bytes) -> bytes:
        """``openssl ts -reply`` for one query (DER in, DER out)."""
        with tempfile.TemporaryDirectory(dir=self.dir) as work:
            q, r = Path(work) / "q.tsq", Path(work) / "r.tsr"
            q.write_bytes(query)
            subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(self.dir / "tsa.cnf"),
                    "-queryfile",
                    str(q),
                    "-out",
                    str(r),
                ],
                check=True,
                capture_output=True,
                timeout=20,
            )
            return r.read_bytes()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def start_tsa(directory: Path) -> TSA:
    directory.mkdir(parents=True, exist_ok=True)
    make_certificates(directory)
    return TSA(directory)
