"""Configuration of the sources (Maildir, IMAP): validated at the config edge like settings.py.

Contracts:
- Secrets are never inline: an IMAP password comes from ``password_file`` or ``password_command``
  (exactly one), read when connecting, never logged.
- ``tls: none`` is accepted only for loopback hosts: a password never crosses a network in clear.
- TLS certificates are verified by default; ``ca_file`` adds a private CA, it does not disable
  verification.
- Account names are unique: they key checkpoints and evidence.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

TlsMode = Literal["implicit", "starttls", "none"]
# RFC 2177: clients should re-issue IDLE at least every 29 minutes; servers may cut at 30.
MAX_IDLE_SECONDS = 29 * 60


def _folder(value: str) -> str:
    if not value or "/" in value or value.startswith("."):
        raise ValueError(
            f"{value!r} is not a Maildir++ folder name (no '/', no leading '.'; "
            "'Quarantine' is stored as .Quarantine)"
        )
    return value


def _nonempty(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{value!r} is empty; write a value or leave the key out")
    return stripped


NonEmpty = Annotated[str, AfterValidator(_nonempty)]


def is_loopback(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1 (no DNS lookup)."""
    if host.lower() in {"localhost", "localhost.", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MaildirSourceConfig(BaseModel):
    """A local Maildir watched for offenders' mail."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    path: Path
    """The Maildir (holding cur/, new/, tmp/); relative paths are under the start directory."""
    name: NonEmpty | None = None
    """Account name recorded in evidence; default: the path."""
    quarantine_folder: Annotated[str, AfterValidator(_folder)] = "Quarantine"
    """Maildir++ folder quarantined mail is moved to."""
    rescan_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    """Seconds between full rescans, which retry items the vault could not take."""


class ImapSourceConfig(BaseModel):
    """A mailbox at an IMAP server, watched with IDLE (or polled where the server lacks it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: NonEmpty
    """Account name: unique; recorded in evidence and checkpoints."""
    host: NonEmpty
    """IMAP server host name or address."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: 993 for tls: implicit, 143 otherwise."""
    tls: TlsMode = "implicit"
    """implicit (IMAPS), starttls, or none (loopback hosts only)."""
    ca_file: Path | None = None
    """PEM file of a private CA to trust in addition to the system's."""
    username: NonEmpty
    """Login name."""
    password_file: Path | None = None
    """File holding the password (first line); keep it 0600."""
    password_command: list[NonEmpty] | None = None
    """Command (argv list) that prints the password, e.g. [pass, show, mail/personal]."""
    folders: list[NonEmpty] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    """Folders to watch; one connection each."""
    quarantine_folder: NonEmpty = "Quarantine"
    """Folder quarantined mail is moved to (created if missing)."""
    scan_existing: bool = True
    """On the first run, also judge what is already in the folders."""
    idle_seconds: float = Field(default=24 * 60, gt=0, le=MAX_IDLE_SECONDS, allow_inf_nan=False)
    """Re-issue IDLE after this many seconds (RFC 2177: under 29 minutes)."""
    poll_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Polling period where the server has no IDLE."""
    timeout_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Socket timeout for connecting and for each command."""

    @model_validator(mode="after")
    def _secure(self) -> ImapSourceConfig:
        if (self.password_file is None) == (self.password_command is None):
            raise ValueError(
                f"IMAP account {self.name!r} needs exactly one of password_file or "
                "password_command (passwords are never written in the config itself)"
            )
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError(
                f"tls: none would send the password for {self.name!r} to {self.host!r} "
                "in clear; it is allowed only for loopback hosts (use implicit or starttls)"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    def resolved(self, base: Path) -> ImapSourceConfig:
        """With relative file paths made absolute under ``base``."""
        update: dict[str, Path] = {}
        if self.password_file is not None:
            update["password_file"] = base / self.password_file
        if self.ca_file is not None:
            update["ca_file"] = base / self.ca_file
        return self.model_copy(update=update)


class SourcesConfig(BaseModel):
    """Where mail and messages come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    maildir: list[MaildirSourceConfig] = []
    """Local Maildirs."""
    imap: list[ImapSourceConfig] = []
    """IMAP mailboxes."""

    @model_validator(mode="after")
    def _unique_names(self) -> SourcesConfig:
        names = [i.name for i in self.imap]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"IMAP account names must be unique; repeated: {repeated}")
        return self
