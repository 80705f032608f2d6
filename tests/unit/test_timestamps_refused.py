"""What ``guardmail.vault.timestamps`` refuses, each with a sentence: no or unreadable trust
anchors, a TSA that cannot be reached, fails, answers garbage or too much (the local test TSA,
``openssl ts`` behind loopback HTTP), and which roots a token is said to chain to."""

from __future__ import annotations

import hashlib
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from guardmail.errors import TimestampFailed
from guardmail.vault import timestamps
from tests.servers.tsa import TSA, make_certificates, start_tsa

MESSAGE = b'{"format":"guardmail-tree-head/1","tree_size":1}'


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TSA]:
    server = start_tsa(tmp_path_factory.mktemp("tsa"))
    yield server
    server.close()


@pytest.fixture
def fresh(tsa: TSA) -> Iterator[TSA]:
    """The module's TSA, put back as it was after the test."""
    yield tsa
    tsa.down, tsa.answer = False, None


@dataclass(frozen=True)
class Paths:
    """What ``load_roots`` reads of ``ssl.get_default_verify_paths()`` (cafile is None when
    SSL_CERT_FILE names no file)."""

    cafile: str | None
    openssl_cafile: str


def default_paths(cafile: str | None, openssl_cafile: str) -> Paths:
    return Paths(cafile, openssl_cafile)


def test_without_a_ca_file_the_systems_bundle_is_read_and_without_one_it_says_so(
    tsa: TSA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test CA stands in for the system's bundle (read whole in the test below).
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: default_paths(None, ""))
    with pytest.raises(TimestampFailed, match="no CA file for the TSA: set evidence.timestamp"):
        timestamps.load_roots(None)
    bundle = str(tsa.ca_file)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: default_paths(None, bundle))
    assert timestamps.load_roots(None) == timestamps.load_roots(tsa.ca_file)


def test_a_ca_file_that_is_missing_or_not_pem_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TimestampFailed, match="CA file .*absent.pem cannot be read"):
        timestamps.load_roots(tmp_path / "absent.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TimestampFailed, match="garbage.pem cannot be read"):
        timestamps.load_roots(garbage)


def test_a_bundle_keeps_every_root_that_parses_and_leaves_out_one_that_does_not(
    tsa: TSA, tmp_path: Path
) -> None:
    (ours,) = timestamps.load_roots(tsa.ca_file)
    bundle = tmp_path / "bundle.pem"
    broken = b"-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n"
    bundle.write_bytes(broken + tsa.ca_file.read_bytes() + broken)
    assert timestamps.load_roots(bundle) == [ours]
    roots, refused = timestamps.pem_certificates(bundle.read_bytes())
    assert roots == [ours] and len(refused) == 2


def test_the_systems_bundle_is_read_whole_and_quietly() -> None:
    # Debian's bundle holds roots with serial number 0, which cryptography warns about (an
    # error here: filterwarnings = error); read at once, the whole bundle used to be refused.
    path = Path("/etc/ssl/certs/ca-certificates.crt")  # ca-certificates: scripts/system-packages.sh
    data = path.read_bytes()
    roots = timestamps.load_roots(path)
    assert len(roots) == data.count(b"-----BEGIN CERTIFICATE-----") > 100
    with warnings.catch_warnings():  # reading the serial warns again
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        assert any(r.serial_number == 0 for r in roots)


def test_a_tsa_answering_an_http_error_is_named_with_it(fresh: TSA) -> None:
    fresh.down = True
    with pytest.raises(TimestampFailed, match=r"the TSA .* answered HTTP 503"):
        timestamps.request(fresh.url, MESSAGE, timeout=10)


def test_a_tsa_nobody_listens_for_cannot_be_reached() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tsr"
    with pytest.raises(TimestampFailed, match=f"the TSA {url} cannot be reached"):
        timestamps.request(url, MESSAGE, timeout=10)


def test_a_tsa_answering_more_than_the_bound_is_refused(fresh: TSA) -> None:
    fresh.answer = b"\x30" * (timestamps.MAX_REPLY + 1)
    with pytest.raises(TimestampFailed, match=f"answered more than {timestamps.MAX_REPLY} bytes"):
        timestamps.request(fresh.url, MESSAGE, timeout=10)


def test_a_reply_that_is_no_rfc3161_response_is_refused(fresh: TSA) -> None:
    fresh.answer = b"<html>teapot</html>"
    reply, _ = timestamps.request(fresh.url, MESSAGE, timeout=10)
    roots = timestamps.load_roots(fresh.ca_file)
    with pytest.raises(TimestampFailed, match="the TSA's reply is not an RFC 3161 response"):
        timestamps.check(reply, MESSAGE, roots)
    with pytest.raises(TimestampFailed, match="not an RFC 3161 response"):
        timestamps.anchors(reply, MESSAGE, roots)


def self_signed(cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.now(UTC) - timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def test_anchors_are_the_roots_the_token_chains_to_else_all_it_was_given(
    fresh: TSA, tmp_path: Path
) -> None:
    reply, nonce = timestamps.request(fresh.url, MESSAGE, timeout=10)
    (ours,) = timestamps.load_roots(fresh.ca_file)
    timestamps.check(reply, MESSAGE, [ours], nonce=nonce)
    stranger = self_signed("a root this token names nowhere")
    assert timestamps.anchors(reply, MESSAGE, [stranger, ours]) == pem(ours)
    # Another CA with the same name but another key (a root rolled over): the token names it,
    # yet does not chain to it, so it is not one of the token's anchors.
    make_certificates(tmp_path)
    (impostor,) = timestamps.load_roots(tmp_path / "ca.pem")
    assert impostor.subject == ours.subject
    assert timestamps.anchors(reply, MESSAGE, [impostor, ours, stranger]) == pem(ours)
    # Nothing given chains to it: every root given is kept (the bundle then says it does not
    # verify, rather than carrying no root at all).
    assert timestamps.anchors(reply, MESSAGE, [impostor]) == pem(impostor)
    assert timestamps.anchors(reply, MESSAGE, [stranger]) == pem(stranger)


def test_the_imprint_is_the_sha256_of_the_signed_bytes() -> None:
    assert timestamps.message_digest(MESSAGE) == hashlib.sha256(MESSAGE).hexdigest()
