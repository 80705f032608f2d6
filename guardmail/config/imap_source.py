"""Configuration of an IMAP source: validated at the config edge like settings.py.

Contracts:
- Secrets are never inline: an IMAP password comes from ``password_file`` or ``password_command``
  (exactly one), read when connecting, never logged; with ``auth: oauth2`` there is no password,
  the tokens come from ``guardmail login`` (guardmail.oauth).
- ``provider: NAME`` fills host, port, TLS, the auth method and the OAuth2 endpoints
  (guardmail.config.oauth.PRESETS) where the operator wrote nothing.
- ``tls: none`` is accepted only for loopback hosts: a password never crosses a network in clear.
- TLS certificates are verified by default; ``ca_file`` adds a private CA, it does not disable
  verification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.fields import NonEmpty, TlsMode, is_loopback, nonempty, with_absolute_files
from guardmail.config.oauth import (
    AuthMethod,
    OAuth2Config,
    Provider,
    auth_problem,
    token_file_name,
    with_preset,
)

# RFC 2177: clients should re-issue IDLE at least every 29 minutes; servers may cut at 30.
MAX_IDLE_SECONDS = 29 * 60


IMAP_FOLDER_ROLES = ("\\Archive", "\\Junk", "\\Trash", "\\Flagged", "\\Important")


def _imap_folder(value: str) -> str:
    stripped = nonempty(value)
    if stripped.startswith("\\") and stripped not in IMAP_FOLDER_ROLES:
        raise ValueError(
            f"{value!r} is not a SPECIAL-USE role guardmail can move mail to "
            f"(one of {', '.join(IMAP_FOLDER_ROLES)}), nor a folder name"
        )
    return stripped


class ImapSourceConfig(BaseModel):
    """A mailbox at an IMAP server, watched with IDLE (or polled where the server lacks it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: NonEmpty
    """Account name: unique; recorded in evidence and checkpoints."""
    provider: Provider | None = None
    """outlook, gmail, icloud, yahoo or fastmail: fills host, port, tls, auth and the oauth2
    endpoints and scope (what you write yourself wins). See the README's provider sections."""
    host: NonEmpty
    """IMAP server host name or address (filled by provider)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: 993 for tls: implicit, 143 otherwise."""
    tls: TlsMode = "implicit"
    """implicit (IMAPS), starttls, or none (loopback hosts only)."""
    ca_file: Path | None = None
    """PEM file of a private CA to trust in addition to the system's."""
    username: NonEmpty
    """Login name."""
    auth: AuthMethod = "password"
    """password (password_file or password_command) or oauth2 (SASL XOAUTH2 or OAUTHBEARER
    with tokens from `guardmail login --account NAME`)."""
    oauth2: OAuth2Config | None = None
    """auth: oauth2: the authorization server and the application (client_id)."""
    password_file: Path | None = None
    """File holding the password (first line); keep it 0600."""
    password_command: list[NonEmpty] | None = None
    """Command (argv list) that prints the password, e.g. [pass, show, mail/personal]."""
    folders: list[NonEmpty] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    """Folders to watch; one connection each."""
    sent_folders: Literal["auto"] | list[NonEmpty] = "auto"
    """Folders of the person's own sent mail: messages there addressed to an offender are
    archived (never moved) as the person's side. ``auto``: the server's \\Sent folder
    (SPECIAL-USE), else a usual name; ``[]``: none. One connection each."""
    quarantine_folder: Annotated[str, AfterValidator(_imap_folder)] = "Quarantine"
    """Folder quarantined mail is moved to (created if missing), or a SPECIAL-USE role the
    server flags a folder with, e.g. '\\Junk' (its name in any language; never created)."""
    scan_existing: bool = True
    """On the first run, also judge what is already in the folders."""
    idle_seconds: float = Field(default=24 * 60, gt=0, le=MAX_IDLE_SECONDS, allow_inf_nan=False)
    """Re-issue IDLE after this many seconds (RFC 2177: under 29 minutes)."""
    poll_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Polling period where the server has no IDLE."""
    timeout_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Socket timeout for connecting and for each command."""

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        return with_preset(data, "imap")

    @model_validator(mode="after")
    def _secure(self) -> ImapSourceConfig:
        has_password = self.password_file is not None or self.password_command is not None
        problem = auth_problem(
            what=f"IMAP account {self.name!r}",
            auth=self.auth,
            oauth2=self.oauth2,
            has_password=has_password,
            provider=self.provider,
        )
        if problem is not None:
            raise ValueError(problem)
        if self.auth == "password" and (self.password_file is None) == (
            self.password_command is None
        ):
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

    def resolved(self, base: Path, state_dir: Path | None = None) -> ImapSourceConfig:
        """With relative file paths made absolute under ``base``, and the OAuth2 token file
        (default STATE_DIR/oauth/imap-NAME.json) filled in."""
        done = with_absolute_files(self, base, "password_file", "ca_file")
        if self.oauth2 is None:
            return done
        token_file = (state_dir or base / "var") / token_file_name("imap", self.name)
        return done.model_copy(update={"oauth2": self.oauth2.resolved(base, token_file)})
