"""OAuth2 sign-in settings (``auth: oauth2``) and the providers' presets (``provider: NAME``).

Contracts:
- No token is ever written in the config: ``guardmail login --account NAME`` fetches them into
  the state directory (``token_file``, filled at load time: STATE_DIR/oauth/ACCOUNT.json).
- A client secret, where a provider needs one for an installed app, comes from
  ``client_secret_file`` (never inline).
- Endpoints are https, except loopback hosts (a local authorization server in tests).
- ``provider`` fills what the operator leaves out (host, port, TLS, the auth method and the
  OAuth2 endpoints and scope); what the operator writes wins. ``PRESETS`` holds the facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

Provider = Literal["outlook", "gmail", "icloud", "yahoo", "fastmail"]
AuthMethod = Literal["password", "oauth2"]
Mechanism = Literal["xoauth2", "oauthbearer"]


def _endpoint(value: str) -> str:
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    loopback = host in {"localhost", "::1"} or host.startswith("127.")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(
            f"{value!r} is not an https:// URL (plain http is allowed for loopback hosts only: "
            "tokens would travel in clear)"
        )
    return value.strip()


Endpoint = Annotated[str, AfterValidator(_endpoint)]


class OAuth2Config(BaseModel):
    """How guardmail gets access tokens for one account (RFC 6749, RFC 8628, RFC 7636)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    token_endpoint: Endpoint
    """The authorization server's token endpoint (refresh_token and the login grants)."""
    client_id: str
    """The application's client id, as registered with the provider."""
    client_secret_file: Path | None = None
    """File holding the client secret (first line), where the provider issues one."""
    scope: str
    """Space-separated scopes asked at login (include offline_access where the provider
    needs it for a refresh token)."""
    device_authorization_endpoint: Endpoint | None = None
    """RFC 8628 device authorization endpoint: `guardmail login` prints a URL and a code."""
    authorization_endpoint: Endpoint | None = None
    """Authorization endpoint for the loopback flow (a browser on this machine, PKCE)."""
    mechanism: Mechanism = "xoauth2"
    """SASL mechanism: xoauth2 (Gmail, Outlook, Yahoo) or oauthbearer (RFC 7628)."""
    vendor: str | None = None
    """XOAUTH2 vendor field (Yahoo once asked for it); left out by default."""
    token_file: Path | None = None
    """Where the tokens are kept (0600). Default: STATE_DIR/oauth/ACCOUNT.json."""

    @model_validator(mode="after")
    def _can_login(self) -> OAuth2Config:
        if not self.client_id.strip():
            raise ValueError("client_id is empty; register an application and write its id")
        if self.device_authorization_endpoint is None and self.authorization_endpoint is None:
            raise ValueError(
                "give device_authorization_endpoint or authorization_endpoint (or both): "
                "`guardmail login` needs one of them to sign in"
            )
        return self

    def resolved(self, base: Path, token_file: Path) -> OAuth2Config:
        """With a relative client_secret_file under ``base`` and ``token_file`` filled in."""
        update: dict[str, Any] = {"token_file": base / (self.token_file or token_file)}
        if self.client_secret_file is not None:
            update["client_secret_file"] = base / self.client_secret_file
        return self.model_copy(update=update)


_MS = "https://login.microsoftonline.com/common/oauth2/v2.0"
_GOOGLE_AUTH = "https://accounts.google.com/o/oauth2/v2/auth"


# What each provider's documentation says (checked for the README's provider sections).
# imap/smtp: host, port, tls, auth; oauth2: endpoints and scope; no client_id (yours).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "outlook": {
        "imap": {"host": "outlook.office365.com", "port": 993, "tls": "implicit"},
        "smtp": {"host": "smtp.office365.com", "port": 587, "tls": "starttls"},
        "auth": {"auth": "oauth2"},
        "oauth2_imap": {
            "token_endpoint": f"{_MS}/token",
            "device_authorization_endpoint": f"{_MS}/devicecode",
            "authorization_endpoint": f"{_MS}/authorize",
            "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
            "mechanism": "xoauth2",
        },
        "oauth2_smtp": {
            "token_endpoint": f"{_MS}/token",
            "device_authorization_endpoint": f"{_MS}/devicecode",
            "authorization_endpoint": f"{_MS}/authorize",
            "scope": "https://outlook.office.com/SMTP.Send offline_access",
            "mechanism": "xoauth2",
        },
    },
    "gmail": {
        "imap": {"host": "imap.gmail.com", "port": 993, "tls": "implicit"},
        "smtp": {"host": "smtp.gmail.com", "port": 465, "tls": "implicit"},
        "auth": {},  # app password or oauth2: the operator says which
        # Google's device flow does not allow the Gmail scopes: the loopback flow only.
        "oauth2_imap": {
            "token_endpoint": "https://oauth2.googleapis.com/token",
            "authorization_endpoint": _GOOGLE_AUTH,
            "scope": "https://mail.google.com/",
            "mechanism": "xoauth2",
        },
    },
    "icloud": {
        "imap": {"host": "imap.mail.me.com", "port": 993, "tls": "implicit"},
        "smtp": {"host": "smtp.mail.me.com", "port": 587, "tls": "starttls"},
        "auth": {"auth": "password"},  # app-specific password; Apple offers no OAuth2 for IMAP
    },
    "yahoo": {
        "imap": {"host": "imap.mail.yahoo.com", "port": 993, "tls": "implicit"},
        "smtp": {"host": "smtp.mail.yahoo.com", "port": 465, "tls": "implicit"},
        "auth": {},
        "oauth2_imap": {
            "token_endpoint": "https://api.login.yahoo.com/oauth2/get_token",
            "authorization_endpoint": "https://api.login.yahoo.com/oauth2/request_auth",
            "scope": "mail-w",
            "mechanism": "xoauth2",
        },
    },
    "fastmail": {
        "imap": {"host": "imap.fastmail.com", "port": 993, "tls": "implicit"},
        "smtp": {"host": "smtp.fastmail.com", "port": 465, "tls": "implicit"},
        "auth": {"auth": "password"},  # app passwords; OAuth2 only for registered partners
    },
}
PRESETS["gmail"]["oauth2_smtp"] = PRESETS["gmail"]["oauth2_imap"]
PRESETS["yahoo"]["oauth2_smtp"] = PRESETS["yahoo"]["oauth2_imap"]


def with_preset(data: Any, kind: Literal["imap", "smtp"]) -> Any:
    """``data`` (a source's or the SMTP section's YAML mapping) with its provider's defaults
    filled in where the operator wrote nothing; anything else is returned as it is."""
    if not isinstance(data, dict) or not isinstance(data.get("provider"), str):
        return data
    preset = PRESETS.get(data["provider"])
    if preset is None:
        return data  # the Literal field names the allowed values
    filled = {**preset[kind], **preset["auth"], **data}
    oauth2 = filled.get("oauth2")
    defaults = preset.get(f"oauth2_{kind}")
    if filled.get("auth") == "oauth2" and defaults is not None:
        filled["oauth2"] = {**defaults, **(oauth2 if isinstance(oauth2, dict) else {})}
    return filled


def token_file_name(kind: Literal["imap", "smtp"], account: str) -> Path:
    """``oauth/imap-NAME.json`` under the state directory: one file per account, its name
    quoted so that any account name is one file name."""
    return Path("oauth") / f"{kind}-{quote(account, safe='')}.json"


def auth_problem(
    *,
    what: str,
    auth: AuthMethod,
    oauth2: OAuth2Config | None,
    has_password: bool,
    provider: str | None,
) -> str | None:
    """Why the auth settings of ``what`` do not fit together, or None."""
    if auth == "oauth2":
        if oauth2 is None:
            return (
                f"{what} has auth: oauth2 but no oauth2: section (token_endpoint, client_id, "
                "scope, and a device or authorization endpoint; a provider fills all but "
                "client_id)"
            )
        if has_password:
            return f"{what} has auth: oauth2: leave password_file and password_command out"
        return None
    if oauth2 is not None:
        return f"{what} has an oauth2: section but auth: password; write auth: oauth2"
    if provider == "outlook":
        return (
            f"{what}: Outlook and Microsoft 365 accept no passwords over IMAP or SMTP; "
            "use auth: oauth2"
        )
    return None
