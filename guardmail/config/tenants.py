"""Tenant files of a multi-tenant install: one YAML file per protected customer in ``tenants.d``.

A tenant file::

    name: alice                      # names the vault directory: lower-case, digits, _ . -
    recipients: [alice@example.org, "@alice-family.example"]   # addresses, or a whole @domain
    offenders:                       # shaped as in the main config
      - name: Ex
        addresses: [ex@example.net]
        action: block
    quarantine_mailbox: alice-quarantine@example.org   # optional: quarantined mail goes here
    warning: {...}                   # optional: as the main config's `warning:`

Contracts:
- ``load_tenants`` reads every ``*.yaml`` / ``*.yml`` file of the directory (not dot-files) with
  the same safe YAML loader and validation as settings.py, and raises ConfigError listing every
  issue in every file as ``FILE:LINE:COL: key.path: message``. Tenant names are unique, and no
  recipient (after normalising, see ``recipient_key``) belongs to two tenants.
- Routing (``Router``) is exact, then without the ``+tag`` (``recipient_delimiter``), then by
  ``@domain`` (that domain only, not its subdomains). Local parts and domains compare
  case-insensitively; IDNA and Unicode spellings of a domain are equal. A recipient of no tenant
  is nobody's: clean.
- Relative paths in tenant files (warning templates, password files) resolve against ``base``,
  the directory guardmail was started in, as in the main config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.aliases import AliasesConfig
from guardmail.config.case import CaseConfig
from guardmail.config.evidence import EvidenceConfig
from guardmail.config.impersonation import ImpersonationConfig
from guardmail.config.settings import (
    TENANT_PATTERN,
    Address,
    OffenderConfig,
    Settings,
    SourcesConfig,
    duplicate_offenders,
    unreadable_reason,
)
from guardmail.config.warning import WarningConfig
from guardmail.config.yamlfile import Source, load_source, validate
from guardmail.core.identity import normalize_domain
from guardmail.errors import ConfigError, ConfigIssue

SUFFIXES = (".yaml", ".yml")

# The sub-settings a tenant file cannot set (and its aliases when left out), one instance for
# every tenant: pydantic deep-copies a model default into each model it builds (~2.2 KB a
# tenant, 2.2 MB of an ISP's 1,000). Frozen and never mutated, equal for all: sharing them
# shares no tenant's data.
_SOURCES = SourcesConfig()
_CASE = CaseConfig()
_IMPERSONATION = ImpersonationConfig()
_EVIDENCE = EvidenceConfig()
_ALIASES = AliasesConfig()


def _tenant_name(value: str) -> str:
    if not re.fullmatch(TENANT_PATTERN, value) or value in {".", ".."}:
        raise ValueError(
            f"tenant {value!r} must be lower-case letters, digits, '_', '.' or '-' "
            "(and not '.' or '..'): it names a directory"
        )
    return value


def _recipient(value: str) -> str:
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not domain or any(c.isspace() for c in text) or "@" in local:
        raise ValueError(
            f"{value!r} is neither an address (alice@example.org) nor a whole domain "
            "written as '@example.org'"
        )
    return text


Recipient = Annotated[str, AfterValidator(_recipient)]


class TenantConfig(BaseModel):
    """One protected customer: the addresses mail reaches them at, and whom to block."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: Annotated[str, AfterValidator(_tenant_name)] = Field(
        json_schema_extra={"pattern": TENANT_PATTERN}
    )
    """Names the tenant's vault directory and rows; unique across files."""
    recipients: list[Recipient] = Field(min_length=1)
    """Their addresses (alice@example.org) and whole domains ('@example.org')."""
    offenders: list[OffenderConfig] = []
    """The people to block, as in the main config."""
    quarantine_mailbox: Address | None = None
    """Quarantined mail is delivered here, unchanged (left out: it is only archived)."""
    warning: WarningConfig | None = None
    """The one cease-contact warning, as in the main config."""
    aliases: AliasesConfig = AliasesConfig()
    """Suspected aliases held for review, as in the main config."""

    @model_validator(mode="after")
    def _no_oauth2(self) -> TenantConfig:
        smtp = self.warning.smtp if self.warning else None
        if smtp is not None and smtp.auth == "oauth2":
            # `guardmail login` signs in the main configuration's accounts only; a token file
            # shared between tenants would break their isolation.
            raise ValueError(
                "warning.smtp: auth: oauth2 is for the main configuration's accounts; "
                "a tenant's warning is sent with a password (password_file or password_command)"
            )
        return self

    def settings(self, *, state_dir: Path) -> Settings:
        """The Settings that open_tenant and Tenant.apply take for this tenant."""
        return Settings(
            state_dir=state_dir,
            tenant=self.name,
            offenders=self.offenders,
            warning=self.warning,
            aliases=self.aliases,
            sources=_SOURCES,
            case=_CASE,
            impersonation=_IMPERSONATION,
            evidence=_EVIDENCE,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedTenants:
    """The tenants read from one directory, in file-name order, and the files they came from."""

    directory: Path
    tenants: tuple[TenantConfig, ...]
    files: tuple[Path, ...]


def recipient_key(recipient: str) -> str:
    """The comparison form of an address or ``@domain``: case-folded, domain in Unicode."""
    local, at, domain = recipient.strip().rpartition("@")
    if not at:
        return recipient.strip().casefold()
    return f"{local.casefold()}@{normalize_domain(domain)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Router:
    """Recipient address -> tenant name; pure, built once per load."""

    addresses: Mapping[str, str]  # recipient_key(address) -> tenant
    domains: Mapping[str, str]  # normalize_domain(domain) -> tenant
    delimiter: str = "+"

    @classmethod
    def build(cls, tenants: Collection[TenantConfig], *, delimiter: str = "+") -> Router:
        addresses: dict[str, str] = {}
        domains: dict[str, str] = {}
        for tenant in tenants:
            for recipient in tenant.recipients:
                key = recipient_key(recipient)
                if key.startswith("@"):
                    domains.setdefault(key[1:], tenant.name)
                else:
                    addresses.setdefault(key, tenant.name)
        return cls(addresses=addresses, domains=domains, delimiter=delimiter)

    def route(self, recipient: str) -> str | None:
        """The tenant ``recipient`` belongs to, or None."""
        key = recipient_key(recipient)
        local, at, domain = key.rpartition("@")
        if not at or not local:
            return None
        found = self.addresses.get(key)
        if found is None and self.delimiter:
            cut = min((i for i in map(local.find, self.delimiter) if i > 0), default=-1)
            if cut > 0:
                found = self.addresses.get(f"{local[:cut]}@{domain}")
        return found if found is not None else self.domains.get(domain)


def load_tenants(
    directory: Path, *, reserved: Collection[str] = (), base: Path | None = None
) -> LoadedTenants:
    """Read and validate every tenant file in ``directory``; ConfigError lists every issue.

    ``reserved`` names tenants that exist elsewhere (the main config's) and may not be reused.
    """
    where = Path.cwd() if base is None else base
    directory = where / directory
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        issue = ConfigIssue(
            file=str(directory),
            line=1,
            column=1,
            path="(directory)",
            message=f"cannot read the tenants directory {directory}: {unreadable_reason(exc)}",
        )
        raise ConfigError([issue]) from None
    files = [
        directory / n
        for n in names
        if n.endswith(SUFFIXES) and not n.startswith(".") and (directory / n).is_file()
    ]
    issues: list[ConfigIssue] = []
    read: list[tuple[Source, TenantConfig | None]] = []
    for path in files:
        try:
            source = load_source(path, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            message = f"cannot read {path}: {unreadable_reason(exc)}"
            issues.append(
                ConfigIssue(file=str(path), line=1, column=1, path="(file)", message=message)
            )
            continue
        except ConfigError as exc:
            issues += exc.issues
            continue
        tenant, found = validate(TenantConfig, source)
        issues += found
        if tenant is not None and tenant.warning is not None and tenant.warning.channel != "email":
            message = "tenants.d tenants have no XMPP accounts: their warning goes by email"
            issues.append(source.issue(("warning", "channel"), message))
        issues += duplicate_offenders([source])
        read.append((source, tenant))
    issues += _clashes(read, reserved)
    if issues:
        unique = dict.fromkeys(issues)
        raise ConfigError(sorted(unique, key=lambda i: (i.file, i.line, i.column)))
    tenants = tuple(
        _resolved(t, where)
        for _, t in read
        if t is not None  # all valid when no issues
    )
    return LoadedTenants(directory=directory, tenants=tenants, files=tuple(files))


def _resolved(tenant: TenantConfig, base: Path) -> TenantConfig:
    """Relative paths resolved against ``base``; default aliases settings shared (_ALIASES)."""
    update: dict[str, object] = {}
    if tenant.warning is not None:
        update["warning"] = tenant.warning.resolved(base)
    if tenant.aliases == _ALIASES and tenant.aliases is not _ALIASES:
        update["aliases"] = _ALIASES
    return tenant.model_copy(update=update) if update else tenant


def _clashes(
    read: list[tuple[Source, TenantConfig | None]], reserved: Collection[str]
) -> list[ConfigIssue]:
    """Names used twice (or reserved) and recipients claimed twice, placed at the second one."""
    issues: list[ConfigIssue] = []
    names: dict[str, str] = {}  # tenant name -> where it is defined
    owners: dict[str, str] = {}  # recipient_key -> where it is listed, and by whom
    for source, tenant in read:
        if tenant is None:
            continue
        if tenant.name in reserved:
            message = (
                f"tenant {tenant.name!r} is the main config's own tenant; "
                "give this customer another name"
            )
            issues.append(source.issue(("name",), message))
        elif tenant.name in names:
            message = f"tenant {tenant.name!r} is already defined at {names[tenant.name]}"
            issues.append(source.issue(("name",), message))
        else:
            names[tenant.name] = _place(source, ("name",))
        for index, recipient in enumerate(tenant.recipients):
            key = recipient_key(recipient)
            loc = ("recipients", index)
            if key in owners:
                message = f"recipient {recipient!r} is already routed at {owners[key]}"
                issues.append(source.issue(loc, message))
            else:
                owners[key] = f"{_place(source, loc)} (tenant {tenant.name!r})"
    return issues


def _place(source: Source, loc: tuple[str | int, ...]) -> str:
    return f"{source.file}:{source.position(loc)[0]}"
