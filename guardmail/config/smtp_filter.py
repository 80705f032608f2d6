"""Configuration of guardmail as a Postfix content filter (or milter) for many tenants.

Contract: the SMTP filter listens on loopback (or a Unix socket, milter mode) only: it relays
what it is given to a next hop that trusts it, so anywhere else it would be an open relay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.fields import DirPath, NonEmpty, is_loopback


def _host_port(value: str) -> str:
    host, port = split_host_port(value)
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"{value!r} is not HOST:PORT (like 127.0.0.1:10025, or [::1]:10025 for IPv6)"
        )
    return value.strip()


def split_host_port(value: str) -> tuple[str, str]:
    """``("127.0.0.1", "10025")`` from ``127.0.0.1:10025``; ``[::1]:25`` gives ``("::1", "25")``."""
    host, _, port = value.strip().rpartition(":")
    return host.removeprefix("[").removesuffix("]"), port


HostPort = Annotated[str, AfterValidator(_host_port)]


def _listen(value: str) -> str:
    """HOST:PORT, or ``unix:/ABSOLUTE/PATH``."""
    stripped = value.strip()
    if stripped.startswith("unix:"):
        path = stripped[5:]
        if not path.startswith("/") or "\0" in path:
            raise ValueError(
                f"{value!r}: a Unix socket is written unix:/ABSOLUTE/PATH "
                "(like unix:/run/guardmail/milter.sock)"
            )
        return stripped
    return _host_port(value)


class SmtpFilterConfig(BaseModel):
    """guardmail as a Postfix content filter for an ISP: one file per protected customer.

    Postfix hands each message to ``listen``; guardmail judges it for every recipient against
    that recipient's tenant (a file in ``tenants_dir``) and re-injects what may pass to
    ``next_hop`` unchanged. See plugins/postfix/README.md for the master.cf wiring.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:10025"
    """Where Postfix hands mail to guardmail: a loopback HOST:PORT, or with mode: milter also
    unix:/PATH (a Unix socket, as in Postfix's smtpd_milters = unix:/PATH)."""
    next_hop: HostPort = "127.0.0.1:10026"
    """The Postfix smtpd that takes re-injected mail (FILTER_README's 127.0.0.1:10026)."""
    mode: Literal["after_queue", "before_queue", "milter"] = "after_queue"
    """after_queue (content_filter: never bounces), before_queue (smtpd_proxy_filter: a block
    is refused with 550 while the sender is still connected) or milter (smtpd_milters and
    non_smtpd_milters: protected recipients removed from the message; next_hop is unused)."""
    socket_group: NonEmpty | None = None
    """mode: milter on a Unix socket: the group that may connect (the socket is 0660), e.g.
    postfix; default: the daemon's own group only."""
    tenants_dir: DirPath = Path("/etc/guardmail/tenants.d")
    """One YAML file per protected customer; re-read when a file changes."""
    recipient_delimiter: str = "+"
    """As Postfix's recipient_delimiter: alice+tag@ is routed like alice@ (empty: off)."""
    hostname: NonEmpty = "localhost"
    """The name guardmail greets with, to Postfix and to the next hop."""
    timeout_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Limit for each reply from the next hop (and for an idle Postfix connection)."""

    @model_validator(mode="after")
    def _loopback(self) -> SmtpFilterConfig:
        if self.listen_unix is not None:
            if self.mode != "milter":
                raise ValueError(
                    f"listen: {self.listen!r} is a Unix socket, which only mode: milter "
                    "serves; the content filter modes listen on a loopback HOST:PORT"
                )
        elif self.socket_group is not None:
            raise ValueError("socket_group applies only to a unix:/PATH listen socket")
        host, _ = split_host_port(self.listen)
        if self.listen_unix is None and not is_loopback(host):
            raise ValueError(
                f"listen: {self.listen!r} is not a loopback address; the filter re-injects "
                "whatever it is given into a next hop that trusts it, so anywhere else it "
                "would be an open relay (run guardmail beside Postfix, on 127.0.0.1)"
            )
        if any(c.isspace() or c == "@" for c in self.recipient_delimiter):
            raise ValueError(
                f"recipient_delimiter {self.recipient_delimiter!r} may not hold spaces or '@'"
            )
        return self

    @property
    def listen_unix(self) -> Path | None:
        """The Unix socket of ``listen: unix:/PATH``, else None."""
        return Path(self.listen[5:]) if self.listen.startswith("unix:") else None

    @property
    def listen_address(self) -> tuple[str, int]:
        host, port = split_host_port(self.listen)
        return host, int(port)

    @property
    def next_hop_address(self) -> tuple[str, int]:
        host, port = split_host_port(self.next_hop)
        return host, int(port)

    def resolved(self, base: Path) -> SmtpFilterConfig:
        """With a relative ``tenants_dir`` made absolute under ``base``."""
        return self.model_copy(update={"tenants_dir": base / self.tenants_dir})
