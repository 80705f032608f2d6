"""Fetching DKIM key records (TXT) through DNS, each lookup bounded in time.

A ``Resolver`` answers one name with the TXT record's strings joined (the record as fetched), or
raises ``LookupFailed`` naming why (timeout, no such name, no TXT record, no resolver
configured). ``DnsResolver`` does it with dnspython: every lookup ends within its ``lifetime``
(seconds, all retries and servers included), so a dead or slow resolver costs at most that.
Tests inject their own resolver (a dict of records).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import dns.resolver

# A TXT record longer than this is no DKIM key we will use (a 8192-bit RSA key is ~1.4 KB):
# it is not even kept, so an offender's domain cannot fill the vault through its DNS.
MAX_RECORD = 4096


class LookupFailed(Exception):
    """A key record could not be fetched: ``temporary`` for timeouts and server failures (the
    record may exist), else the name has no such record."""

    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.temporary = temporary


class Resolver(Protocol):
    """Fetches a key record; ``name`` says which resolver it is (kept with each snapshot)."""

    @property
    def name(self) -> str:
        """Which resolver this is, as kept with each snapshot."""
        ...

    def txt(self, qname: str, *, lifetime: float) -> bytes:
        """The first TXT record at ``qname``, its strings joined; LookupFailed if there is none."""
        ...


class DnsResolver:
    """dnspython's stub resolver: the system's (/etc/resolv.conf) unless ``nameservers`` are
    given (``HOST`` or ``HOST:PORT``, port 53 by default)."""

    def __init__(self, nameservers: Sequence[str] = ()) -> None:
        self._nameservers = list(nameservers)
        self._resolver: dns.resolver.Resolver | None = None
        self._problem = ""
        self._name = ""
        # dnspython is imported and the resolver made at the first use (a lookup, or the name
        # kept with a check), in the tenant's checker thread: not by every tenant at start.
        self._setup = threading.Lock()

    @property
    def name(self) -> str:
        self._configure()
        return self._name

    def _configure(self) -> None:
        with self._setup:
            if self._name:
                return
            import dns.resolver

            nameservers = self._nameservers
            try:
                if nameservers:
                    resolver = dns.resolver.Resolver(configure=False)
                    resolver.nameservers = [_host(s) for s in nameservers]
                    resolver.nameserver_ports = {_host(s): _port(s) for s in nameservers}
                else:
                    resolver = dns.resolver.Resolver()
                self._resolver = resolver
                servers = nameservers or [str(s) for s in resolver.nameservers]
                self._name = "dnspython " + ", ".join(servers)
            except (dns.resolver.NoResolverConfiguration, OSError, ValueError) as exc:
                self._problem = f"no DNS resolver configured ({exc})"
                self._name = "dnspython (unconfigured)"

    def txt(self, qname: str, *, lifetime: float) -> bytes:
        import dns.exception
        import dns.name
        import dns.rdatatype
        import dns.resolver

        self._configure()
        if self._resolver is None:
            raise LookupFailed(self._problem, temporary=True)
        try:
            name = dns.name.from_text(qname)
        except dns.exception.DNSException as exc:
            # The selector and domain come from the signature: a name no DNS can hold (a label
            # over 63 bytes, an empty one) will never have a record, so it is no temperror.
            why = f"{qname[:300]}: not a DNS name ({exc})"
            raise LookupFailed(why, temporary=False) from None
        try:
            answer = self._resolver.resolve(
                name,
                dns.rdatatype.TXT,
                lifetime=lifetime,
                raise_on_no_answer=False,
                search=False,
            )
        except dns.resolver.NXDOMAIN:
            raise LookupFailed(f"{qname}: no such name (NXDOMAIN)", temporary=False) from None
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            why = f"{qname}: no answer within {lifetime:g} s"
            raise LookupFailed(why, temporary=True) from None
        except dns.resolver.NoNameservers as exc:
            raise LookupFailed(f"{qname}: every server failed ({exc})", temporary=True) from None
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"{qname}: {exc}", temporary=True) from None
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    return b"".join(rdata.strings)
        raise LookupFailed(f"{qname}: no TXT record", temporary=False)


class StaticResolver:
    """Records from a mapping (tests, and re-checking from snapshots): a missing name is
    NXDOMAIN, a value that is an exception is raised."""

    def __init__(self, records: Mapping[str, bytes | Exception], name: str = "static") -> None:
        self.records = dict(records)
        self.name = name

    def txt(self, qname: str, *, lifetime: float) -> bytes:
        got = self.records.get(qname.rstrip(".").lower())
        if got is None:
            raise LookupFailed(f"{qname}: no such name (NXDOMAIN)", temporary=False)
        if isinstance(got, Exception):
            raise got
        return got


def _host(server: str) -> str:
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]")
    return server


def _port(server: str) -> int:
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return int(port)
    return 53
