"""Configuration of the one cease-contact warning and of the channel that sends it.

Contracts:
- ``channel: email`` needs ``from`` and ``smtp``; ``channel: xmpp`` sends from one of the
  ``sources.xmpp`` accounts (``xmpp_account``, checked against the sources when the whole file
  is loaded) and needs neither.
- The submission password comes from ``password_file`` or ``password_command``, never inline;
  with ``auth: oauth2`` the tokens come from ``guardmail login --account warning``.
- ``tls: none`` only for loopback hosts (the password would travel in clear).
- ``from`` is one address with an optional display name; the display name is the victim's name
  in the template unless ``victim`` says otherwise.
"""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.fields import NonEmpty, TlsMode, is_loopback, with_absolute_files
from guardmail.config.oauth import (
    AuthMethod,
    OAuth2Config,
    Provider,
    auth_problem,
    token_file_name,
    with_preset,
)

# The account name `guardmail login --account` takes for the warning's submission server.
WARNING_ACCOUNT = "warning"


def _one_address(value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{value!r} contains a line break or NUL")
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not (at and local and domain) or "," in addr:
        raise ValueError(f"{value!r} is not one address like 'Jane Victim <victim@example.org>'")
    return value.strip()


class SmtpConfig(BaseModel):
    """The submission server the warning is sent through (the victim's own provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    provider: Provider | None = None
    """outlook, gmail, icloud, yahoo or fastmail: fills host, port, tls, auth and the oauth2
    endpoints and scope (what you write yourself wins)."""
    host: NonEmpty
    """Submission server host (filled by provider)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: 465 for tls: implicit, 587 for starttls, 25 for none."""
    tls: TlsMode = "starttls"
    """implicit, starttls, or none (loopback hosts only)."""
    ca_file: Path | None = None
    """PEM file of a private CA to trust as well."""
    username: NonEmpty | None = None
    """Login name; leave out for a server that needs no login (loopback relay)."""
    auth: AuthMethod = "password"
    """password, or oauth2 (SASL XOAUTH2 or OAUTHBEARER with tokens from
    `guardmail login --account warning`)."""
    oauth2: OAuth2Config | None = None
    """auth: oauth2: the authorization server and the application (client_id)."""
    password_file: Path | None = None
    """File holding the password (first line)."""
    password_command: list[NonEmpty] | None = None
    """Command (argv list) that prints the password."""
    timeout_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Socket timeout."""

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        return with_preset(data, "smtp")

    @model_validator(mode="after")
    def _secure(self) -> SmtpConfig:
        has_secret = self.password_file is not None or self.password_command is not None
        problem = auth_problem(
            what="warning.smtp",
            auth=self.auth,
            oauth2=self.oauth2,
            has_password=has_secret,
            provider=self.provider,
        )
        if problem is not None:
            raise ValueError(problem)
        if self.password_file is not None and self.password_command is not None:
            raise ValueError("give password_file or password_command, not both")
        if self.auth == "oauth2" and self.username is None:
            raise ValueError("auth: oauth2 needs the username the token is for")
        if self.auth == "password" and (self.username is None) != (not has_secret):
            raise ValueError("username and a password_file or password_command go together")
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError(
                f"tls: none would send mail to {self.host!r} unencrypted; it is allowed only "
                "for loopback hosts (use implicit or starttls)"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"implicit": 465, "starttls": 587, "none": 25}[self.tls]

    def resolved(self, base: Path, state_dir: Path | None = None) -> SmtpConfig:
        done = with_absolute_files(self, base, "password_file", "ca_file")
        if self.oauth2 is None:
            return done
        token_file = (state_dir or base / "var") / token_file_name("smtp", WARNING_ACCOUNT)
        return done.model_copy(update={"oauth2": self.oauth2.resolved(base, token_file)})


class WarningConfig(BaseModel):
    """The one warning to stop contact, sent at most once per offender."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, populate_by_name=True
    )

    send: Literal["manual", "on_first_block"] = "manual"
    """manual: only with `guardmail warn`; on_first_block: after the first archived item."""
    channel: Literal["email", "xmpp"] = "email"
    """email (through `smtp`) or xmpp (from the `xmpp_account` source, as a chat message)."""
    from_: Annotated[str, AfterValidator(_one_address)] | None = Field(default=None, alias="from")
    """E-mail sender, e.g. "Jane Victim <victim@example.org>"; the name fills {{ victim }}."""
    victim: NonEmpty | None = None
    """Your name as {{ victim }} shows it (default: the name in `from`, else your address)."""
    xmpp_account: NonEmpty | None = None
    """channel xmpp: the name of the sources.xmpp account to send from (default: the only one)."""
    subject: NonEmpty = "Stop contacting me"
    """Subject line (plain text, no line breaks)."""
    template_file: Path
    """Jinja2 text template; placeholders: greeting_name (the offender's, empty when unset),
    victim, date, law, recipient, and offender (the config's label, best left out)."""
    law: str = ""
    """The law the victim chooses to cite, shown where the template says {{ law }}."""
    smtp: SmtpConfig | None = None
    """Submission server (channel email)."""

    @model_validator(mode="after")
    def _channel_complete(self) -> WarningConfig:
        if self.channel == "email" and (self.from_ is None or self.smtp is None):
            raise ValueError("channel: email needs `from` and `smtp` (the submission server)")
        if self.channel == "xmpp" and self.smtp is not None:
            raise ValueError("channel: xmpp sends from an XMPP account; leave `smtp` out")
        return self

    def resolved(self, base: Path, state_dir: Path | None = None) -> WarningConfig:
        smtp = self.smtp.resolved(base, state_dir) if self.smtp is not None else None
        return self.model_copy(update={"template_file": base / self.template_file, "smtp": smtp})
