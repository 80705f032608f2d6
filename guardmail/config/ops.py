"""Configuration for operating guardmail: the Prometheus metrics endpoint."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from guardmail.config.fields import is_loopback


class MetricsConfig(BaseModel):
    """Prometheus metrics over HTTP, on a loopback address only (no secrets, but no need to
    tell the network how many messages a victim receives)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    listen: str = "127.0.0.1:9464"
    """host:port to serve /metrics on; loopback only."""

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536 or not is_loopback(host):
            raise ValueError(f"{value!r} is not a loopback host:port such as 127.0.0.1:9464")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
