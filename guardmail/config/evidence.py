"""The ``evidence:`` section: what the vault does beyond archiving (trusted timestamps).

Nothing here is secret: a TSA's URL and its CA certificate are public.
"""

from __future__ import annotations

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
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    timestamp: TimestampConfig | None = None
    """Trusted timestamps of the signed tree heads (left out: none are requested)."""

    def resolved(self, base: Path) -> EvidenceConfig:
        """With a relative ``ca_file`` made absolute under ``base``."""
        stamp = self.timestamp
        if stamp is None or stamp.ca_file is None:
            return self
        return self.model_copy(
            update={"timestamp": stamp.model_copy(update={"ca_file": base / stamp.ca_file})}
        )
