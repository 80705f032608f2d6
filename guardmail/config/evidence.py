"""Configuration of the evidence kept at receipt: DKIM/ARC checks, their DNS, the trusted server."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EvidenceConfig(BaseModel):
    """What is checked and kept of each archived mail item's authenticity."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    dkim: bool = True
    """Verify DKIM signatures and the ARC chain of archived mail, after archiving it, and keep
    the key records fetched (guardmail evidence verify-dkim SEQ checks them again offline)."""
    authserv_id: str = ""
    """The authserv-id of the receiving server you trust (your provider's, e.g. mx.example.org):
    its topmost Authentication-Results header is kept; every other one is ignored. Empty: none."""
    nameservers: list[str] = []
    """DNS servers for DKIM key lookups (IP or IP:PORT); empty: the system's resolv.conf."""
    dns_timeout: float = Field(default=2.0, gt=0, le=30)
    """Seconds one key lookup may take."""
    dns_budget: float = Field(default=5.0, gt=0, le=60)
    """Seconds all key lookups of one item may take together."""

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
