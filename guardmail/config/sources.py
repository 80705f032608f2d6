"""Configuration of the sources (Maildir, IMAP, SMTP filter): validated at the config edge like
settings.py.

Contracts:
- Secrets are never inline: an IMAP password comes from ``password_file`` or ``password_command``
  (exactly one), read when connecting, never logged; with ``auth: oauth2`` there is no password,
  the tokens come from ``guardmail login`` (guardmail.oauth).
- ``provider: NAME`` fills host, port, TLS, the auth method and the OAuth2 endpoints
  (guardmail.config.oauth.PRESETS) where the operator wrote nothing.
- ``tls: none`` is accepted only for loopback hosts: a password never crosses a network in clear.
- TLS certificates are verified by default; ``ca_file`` adds a private CA, it does not disable
  verification.
- Account names are unique: they key checkpoints and evidence.
- The SMTP filter listens on loopback only: it relays what it is given to a next hop that trusts
  it, so anywhere else it would be an open relay.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from guardmail.config.oauth import (
    AuthMethod,
    OAuth2Config,
    Provider,
    auth_problem,
    token_file_name,
    with_preset,
)
from guardmail.config.yamlfile import Source
from guardmail.errors import ConfigIssue

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


def _written_path(value: object) -> object:
    """Refuse an empty path, which pydantic would read as ".", the start directory."""
    if isinstance(value, str) and not value.strip():
        raise ValueError(
            f"{value!r} is empty, which would mean the directory guardmail starts in; "
            "write the directory's path"
        )
    return value


# A directory guardmail acts in: an empty string is a slip, not the current directory.
DirPath = Annotated[Path, BeforeValidator(_written_path)]


Model = TypeVar("Model", bound=BaseModel)


def with_absolute_files(model: Model, base: Path, *keys: str) -> Model:
    """``model`` with each of the path fields ``keys`` that is set made absolute under ``base``."""
    update = {k: base / v for k in keys if (v := getattr(model, k)) is not None}
    return model.model_copy(update=update)


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

    path: DirPath
    """The Maildir (holding cur/, new/, tmp/); relative paths are under the start directory."""
    name: NonEmpty | None = None
    """Account name recorded in evidence; default: the path."""
    quarantine_folder: Annotated[str, AfterValidator(_folder)] = "Quarantine"
    """Maildir++ folder quarantined mail is moved to."""
    rescan_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    """Seconds between full rescans, which retry items the vault could not take."""
    create: bool = False
    """Create the Maildir if missing; otherwise a path that is not a Maildir is an error."""


MAILDIR_SUBDIRS = ("cur", "new", "tmp")


def maildir_problem(path: Path, *, create: bool) -> str | None:
    """Why ``path`` cannot be watched as a Maildir, or None when it can.

    A misspelt path must not be created and watched in silence (nothing would arrive there, and
    nobody would be protected): unless ``create``, it has to be a directory holding ``cur/``,
    ``new/`` and ``tmp/``. With ``create``, only something in the way (a file) is refused.
    """
    try:
        found = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError as exc:  # e.g. a directory this user may not enter: say so, not "missing"
        return f"Maildir {path} cannot be examined by this user: {exc.strerror}"
    if found is False:
        return f"{path} is a file, not a Maildir directory"
    if create:
        return None
    if found is None:
        return (
            f"Maildir {path} does not exist; correct the path, or add 'create: true' "
            "to this entry to have guardmail create it"
        )
    missing = [d for d in MAILDIR_SUBDIRS if not os.path.isdir(path / d)]
    if missing:
        return (
            f"{path} is not a Maildir (no {', '.join(d + '/' for d in missing)}); correct the "
            "path, or add 'create: true' to this entry to have guardmail create them"
        )
    return None


def maildir_issues(
    maildirs: Sequence[MaildirSourceConfig], main: Source, base: Path
) -> list[ConfigIssue]:
    """An issue at ``sources.maildir.N.path`` for each entry ``maildir_problem`` refuses."""
    return [
        main.issue(("sources", "maildir", i, "path"), problem)
        for i, m in enumerate(maildirs)
        if (problem := maildir_problem(base / m.path, create=m.create)) is not None
    ]


IMAP_FOLDER_ROLES = ("\\Archive", "\\Junk", "\\Trash", "\\Flagged", "\\Important")


def _imap_folder(value: str) -> str:
    stripped = _nonempty(value)
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


class SourcesConfig(BaseModel):
    """Where mail and messages come from."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    maildir: list[MaildirSourceConfig] = []
    """Local Maildirs."""
    imap: list[ImapSourceConfig] = []
    """IMAP mailboxes."""
    smtp_filter: SmtpFilterConfig | None = None
    """guardmail as a Postfix content filter for many tenants (tenants_dir)."""
    xmpp: list[XmppSourceConfig] = []
    """XMPP accounts."""

    @model_validator(mode="after")
    def _unique_names(self) -> SourcesConfig:
        names = [i.name for i in self.imap]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"IMAP account names must be unique; repeated: {repeated}")
        return self

    @model_validator(mode="after")
    def _unique_xmpp_names(self) -> SourcesConfig:
        names = [x.name for x in self.xmpp]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"XMPP account names must be unique; repeated: {repeated}")
        return self
