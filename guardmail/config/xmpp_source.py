"""Configuration of an XMPP source: the watched account, its rooms, how guardmail connects.

Contracts:
- The password comes from ``password_file`` or ``password_command`` (exactly one), never inline.
- ``tls: none`` is accepted only for loopback hosts: a password never crosses a network in clear.
- TLS certificates are verified by default; ``ca_file`` adds a private CA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.fields import NonEmpty, TlsMode, is_loopback, with_absolute_files


def _bare_jid(value: str) -> str:
    jid = value.strip()
    local, at, domain = jid.partition("@")
    if (
        not local
        or not at
        or not domain
        or "/" in jid
        or "@" in domain
        or any(c.isspace() for c in jid)
    ):
        raise ValueError(
            f"{value!r} is not a bare account JID like victim@example.org "
            "(a local part, '@', a domain; no resource)"
        )
    return jid


BareJid = Annotated[str, AfterValidator(_bare_jid)]


class RoomConfig(BaseModel):
    """A group chat (MUC, XEP-0045) to watch."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    jid: BareJid
    """The room's JID, e.g. lounge@conference.example.org."""
    nick: NonEmpty | None = None
    """The nick to join with; default: the person's (the account's local part), which the
    server joins to the person's own occupant where it allows several sessions per nick."""


class XmppSourceConfig(BaseModel):
    """An XMPP account watched by its own client resource (negative priority, so it never takes
    messages from the person's own clients): messages, carbons, the server archive (MAM) and
    subscription requests are judged; offenders' stanzas are archived byte-exact."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: NonEmpty
    """Account name: unique; recorded in evidence and checkpoints."""
    jid: BareJid
    """The watched account's bare JID, e.g. victim@example.org."""
    resource: NonEmpty = "guardmail"
    """guardmail's own resource on the account (the person's clients keep theirs)."""
    password_file: Path | None = None
    """File holding the password (first line); keep it 0600."""
    password_command: list[NonEmpty] | None = None
    """Command (argv list) that prints the password, e.g. [pass, show, xmpp/personal]."""
    host: NonEmpty | None = None
    """Server host name or address; default: DNS SRV records of the JID's domain."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Port when host is set. Default: 5222 (5223 for tls: implicit)."""
    tls: TlsMode = "starttls"
    """starttls, implicit (direct TLS), or none (loopback hosts only). The certificate must be
    valid for the JID's domain, whatever host is connected to."""
    ca_file: Path | None = None
    """PEM file of a private CA to trust in addition to the system's."""
    strangers: Literal["allow", "quarantine"] = "allow"
    """Messages from JIDs not in the roster: allow, or quarantine (archived, never
    acknowledged). Subscription requests from strangers are left alone either way."""
    server_block: bool = False
    """Keep block offenders' jids and domains in the server blocklist (XEP-0191). The server
    then drops their stanzas before any archive: later attempts are no longer documented."""
    send_presence: bool = True
    """Send presence (priority -1). Needed for carbons while none of the person's own clients
    is online, and for pending subscription requests; contacts with a presence subscription see
    an extra online resource. Without it, such messages are found at the next archive sync."""
    mam_sync_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Read the server archive (MAM) this often, besides at every (re)connect: it holds what
    carbons do not copy (private messages from group chats, on Prosody)."""
    rooms: list[RoomConfig] = Field(default_factory=list)
    """Group chats (MUC) the person is in: the watcher joins each, and an offender's messages
    there are archived with the room, the nick and the real JID where the room reveals it."""
    room_context: int = Field(default=5, ge=0, le=50)
    """Messages of a room kept as context before and after each offender message in it."""
    ping_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """Keepalive ping (XEP-0199) period; no answer within timeout_seconds means reconnect."""
    timeout_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    """Limit for connecting and logging in, and for each request to the server."""

    @model_validator(mode="after")
    def _secure(self) -> XmppSourceConfig:
        if (self.password_file is None) == (self.password_command is None):
            raise ValueError(
                f"XMPP account {self.name!r} needs exactly one of password_file or "
                "password_command (passwords are never written in the config itself)"
            )
        target = self.host or self.domain
        if self.tls == "none" and not is_loopback(target):
            raise ValueError(
                f"tls: none would send the password for {self.name!r} to {target!r} "
                "in clear; it is allowed only for loopback hosts (use starttls or implicit)"
            )
        return self

    @property
    def domain(self) -> str:
        return self.jid.partition("@")[2]

    @property
    def effective_port(self) -> int:
        return self.port or (5223 if self.tls == "implicit" else 5222)

    def resolved(self, base: Path) -> XmppSourceConfig:
        """With relative file paths made absolute under ``base``."""
        return with_absolute_files(self, base, "password_file", "ca_file")
