"""DKIM key lookups through dnspython against a real DNS server on loopback
(``tests.servers.dns_txt``): each way a lookup can fail becomes a sentence and the right result
(a temporary failure may pass later, a permanent one will not), and a dead server costs at most
the lookup's lifetime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardmail.vault.dkimcheck import Limits, check
from guardmail.vault.keyfetch import DnsResolver, LookupFailed
from tests.servers.dns_txt import NODATA, SERVFAIL, SILENT, TxtServer
from tests.unit.test_dkim_receipt import NAME, make_key, signed

LONG = b"v=DKIM1; k=rsa; p=" + b"A" * 600  # split over several 255-byte TXT strings


@pytest.fixture(scope="module")
def dns() -> Iterator[TxtServer]:
    with TxtServer(
        {
            "long._domainkey.example.net": LONG,
            "fail._domainkey.example.net": SERVFAIL,
            "empty._domainkey.example.net": NODATA,
            "dead._domainkey.example.net": SILENT,
        }
    ) as server:
        yield server


def lookup_error(resolver: DnsResolver, qname: str) -> LookupFailed:
    with pytest.raises(LookupFailed) as caught:
        resolver.txt(qname, lifetime=0.5)
    return caught.value


def test_a_record_split_over_strings_comes_back_joined_and_the_resolver_is_named(
    dns: TxtServer,
) -> None:
    resolver = DnsResolver([dns.address])
    assert resolver.txt("LONG._domainkey.example.net.", lifetime=2) == LONG
    assert resolver.name == f"dnspython {dns.address}"
    assert "long._domainkey.example.net" in dns.asked


def test_each_way_a_lookup_fails_is_a_sentence_temporary_or_not(dns: TxtServer) -> None:
    resolver = DnsResolver([dns.address])
    missing = lookup_error(resolver, "gone._domainkey.example.net")
    assert not missing.temporary and "no such name (NXDOMAIN)" in str(missing)
    empty = lookup_error(resolver, "empty._domainkey.example.net")
    assert not empty.temporary and str(empty).endswith(": no TXT record")
    failing = lookup_error(resolver, "fail._domainkey.example.net")
    assert failing.temporary and "every server failed" in str(failing)
    dead = lookup_error(resolver, "dead._domainkey.example.net")
    assert dead.temporary and "no answer within 0.5 s" in str(dead)


def test_a_name_no_dns_can_hold_is_permanent_and_never_asked(dns: TxtServer) -> None:
    # The selector is the sender's: a label over 63 bytes can never have a record.
    resolver = DnsResolver([dns.address])
    qname = "s" * 64 + "._domainkey.example.net"
    bad = lookup_error(resolver, qname)
    assert not bad.temporary and "not a DNS name" in str(bad)
    assert qname not in dns.asked


def test_a_server_address_with_and_without_port() -> None:
    # Port 53 by default; a bracketed IPv6 address with a port (were the brackets or the port
    # left on the address, dnspython would refuse it and the resolver be unconfigured).
    assert DnsResolver(["127.0.0.1"]).name == "dnspython 127.0.0.1"
    assert DnsResolver(["[::1]:5353"]).name == "dnspython [::1]:5353"


def test_an_unusable_server_address_leaves_the_resolver_unconfigured_not_crashed() -> None:
    resolver = DnsResolver(["not-an-address:53"])
    assert resolver.name == "dnspython (unconfigured)"
    down = lookup_error(resolver, "sel._domainkey.example.net")
    assert down.temporary and "no DNS resolver configured" in str(down)


@pytest.mark.parametrize(
    ("record", "result", "why"),
    [
        (SERVFAIL, "temperror", "every server failed"),
        (SILENT, "temperror", "no answer within 0.3 s"),
        (NODATA, "permerror", "no TXT record"),
    ],
)
def test_a_signature_whose_key_cannot_be_fetched_is_recorded_with_why(
    record: str, result: str, why: str
) -> None:
    key = make_key()
    raw = signed(key)
    with TxtServer({NAME: record}) as dns:
        found = check(raw, DnsResolver([dns.address]), limits=Limits(lookup_seconds=0.3))
    (sig,) = found.signatures
    assert (sig.result, sig.key_sha256) == (result, None)
    assert why in sig.reason
    (snap,) = found.snapshots
    assert snap.record is None and why in snap.problem
    assert snap.resolver == f"dnspython {dns.address}"


def test_the_same_signature_passes_once_the_server_answers() -> None:
    key = make_key()
    raw = signed(key)
    with TxtServer({NAME: key.record}) as dns:
        found = check(raw, DnsResolver([dns.address]))
    assert [s.result for s in found.signatures] == ["pass"]
    assert [s.record for s in found.snapshots] == [key.record]


def test_without_servers_given_the_systems_resolver_is_used() -> None:
    # /etc/resolv.conf's servers (no query is sent here), or a sentence if it has none.
    resolver = DnsResolver()
    assert resolver.name.startswith("dnspython ")
    if resolver.name == "dnspython (unconfigured)":
        assert "no DNS resolver configured" in str(lookup_error(resolver, NAME))
