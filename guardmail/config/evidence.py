"""The ``evidence:`` section: what the vault checks and keeps beyond the bytes (DKIM/ARC checks
at receipt and their DNS, the trusted server's Authentication-Results, trusted timestamps).

Nothing here is secret: a TSA's URL and its CA certificate are public.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TimestampConfig(BaseModel):
    """RFC 3161 trusted timestamps of the vault's signed tree heads."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    tsa_url: str
    """The time-stamping authority's URL (http:// or https://; HTTPS certificates are verified),
    e.g. http://timestamp.digicert.com or https://freetsa.org/tsr."""
    ca_file: Path | None = None
    """PEM file with the TSA's root certificate(s); left out: the system's CA bundle."""
    every_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    """At most one timestamp this often (a new signed tree head waits for the next slot)."""
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 20.0
    """How long one request to the TSA may take."""
    publish_command: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1
    )
    """A command (program and arguments, no shell) run after each new timestamp with the
    stamped head, its signature, key fingerprint and token as JSON on stdin: publish heads
    elsewhere, e.g. mail them to your lawyer. A failure is logged; the next head is sent."""

    @field_validator("tsa_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class EvidenceConfig(BaseModel):
    """What is checked and kept of each archived item's authenticity, and when the log was."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    dkim: bool = True
    """Verify DKIM signatures and the ARC chain of archived mail, after archiving it, and keep
    the key records fetched (guardmail evidence verify-dkim SEQ checks them again offline)."""
    authserv_id: str = ""
    """The authserv-id of the receiving server you trust (your provider's, e.g. mx.example.org):
    its topmost Authentication-Results header is kept; every other one is ignored. Empty: none.
    Also what ``impersonation`` trusts unless it names its own."""
    nameservers: list[str] = []
    """DNS servers for DKIM key lookups (IP or IP:PORT); empty: the system's resolv.conf."""
    dns_timeout: float = Field(default=2.0, gt=0, le=30)
    """Seconds one key lookup may take."""
    dns_budget: float = Field(default=5.0, gt=0, le=60)
    """Seconds all key lookups of one item may take together."""
    timestamp: TimestampConfig | None = None
    """Trusted timestamps of the signed tree heads (left out: none are requested)."""

    @field_validator("authserv_id")
    @classmethod
    def _token(cls, value: str) -> str:
        if value and (any(c.isspace() or c == ";" for c in value) or not value.isprintable()):
            raise ValueError(f"{value!r} is not an authserv-id (one token, no spaces or ';')")
        return value

    @field_validator("nameservers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or host.endswith(":") or not host or not port.isdigit():
                host, port = server, "53"
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                raise ValueError(f"{server!r} is not an IP address or IP:PORT") from None
            if not 0 < int(port) < 65536:
                raise ValueError(f"{server!r}: port {port} is out of range")
        return value

    def resolved(self, base: Path) -> EvidenceConfig:
        """With a relative ``ca_file`` made absolute under ``base``."""
        stamp = self.timestamp
        if stamp is None or stamp.ca_file is None:
            return self
        return self.model_copy(
            update={"timestamp": stamp.model_copy(update={"ca_file": base / stamp.ca_file})}
        )
