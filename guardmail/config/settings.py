"""YAML -> typed, validated settings; every error names its file, line and key.

Contracts:
- ``load_config`` returns frozen pydantic models (``extra="forbid"``): nothing past this module
  sees a YAML dict. It raises ConfigError listing *every* issue found in the main file and in
  the offender files, sorted by (file, line, column), each printed as
  ``FILE:LINE:COL: key.path: message``.
- Relative paths (the config file itself, ``state_dir``, Maildir ``path``, ``offenders_files``)
  resolve against ``cwd``: the directory guardmail was started in unless the caller says.
  ``LoadedConfig.settings`` holds them absolute.
- ``offenders_files`` entries holding ``*``, ``?`` or ``[`` are globs (matching nothing is
  fine); any other entry must name a readable file. Left out, it is ``offenders.d/*.yaml``
  beside the main file (``DEFAULT_OFFENDERS_GLOB``, where reports write: the conf.d
  convention); written, even as ``[]``, it replaces that default. Their offenders are appended,
  in order, to ``settings.offenders``; every file read is in ``LoadedConfig.files`` for hot reload.
- Offender names are unique ignoring case, across all files. Offender ``id``s need not be:
  entries that share an id are one person to the warning ledger (one warning for all).
- Patterns and display-name globs are checked by ``core.offender_patterns.check_pattern`` and
  ``check_display_name``, the code the rules compile them with: what RE2 cannot run, and what
  would match every sender (``*``, ``*@*``, ``re:.*``), is an issue at the pattern.
- Each ``sources.maildir`` path must be a Maildir when the config is loaded, unless its entry
  says ``create: true`` (see ``guardmail.config.sources.maildir_problem``).
- YAML is parsed with the safe loader only (see ``guardmail.config.yamlfile``).
- ``config/guardmail.schema.json`` is ``render_schema()``; ``python -m guardmail.config.settings``
  prints it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from guardmail.config.aliases import AliasesConfig
from guardmail.config.case import CaseConfig
from guardmail.config.evidence import EvidenceConfig
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.config.impersonation import ImpersonationConfig
from guardmail.config.offenders import (
    GLOB_CHARS,
    Action,
    Address,
    NonEmpty,
    OffenderConfig,
    OffenderFile,
    duplicate_offenders,
)
from guardmail.config.ops import MetricsConfig
from guardmail.config.sources import MaildirSourceConfig, SourcesConfig, maildir_issues
from guardmail.config.warning import WarningConfig
from guardmail.config.yamlfile import Source, load_source, validate
from guardmail.errors import ConfigError, ConfigIssue

SCHEMA_ID = "urn:guardmail:config"
TENANT_PATTERN = r"^[a-z0-9_.-]+$"
# Loaded beside the main file when offenders_files is left out; reports write there.
DEFAULT_OFFENDERS_GLOB = "offenders.d/*.yaml"


__all__ = [
    "Action",
    "Address",
    "NonEmpty",
    "OffenderFile",
    "duplicate_offenders",
    "ImapSourceConfig",
    "LoadedConfig",
    "MaildirSourceConfig",
    "OffenderConfig",
    "Settings",
    "SourcesConfig",
    "load_config",
    "render_schema",
    "settings_json_schema",
]


def _tenant(value: str) -> str:
    if not re.fullmatch(TENANT_PATTERN, value) or value in {".", ".."}:
        raise ValueError(
            f"tenant {value!r} must be lower-case letters, digits, '_', '.' or '-' "
            "(and not '.' or '..'): it names a directory"
        )
    return value


class Settings(BaseModel):
    """guardmail configuration: one protected person (tenant), their offenders and accounts."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    state_dir: Path = Path("./var")
    """Evidence vault and state; relative paths are under the start directory."""
    tenant: Annotated[str, AfterValidator(_tenant)] = Field(
        default="default", json_schema_extra={"pattern": TENANT_PATTERN}
    )
    """Name of the protected person."""
    offenders: list[OffenderConfig] = []
    """The people to block."""
    offenders_files: list[NonEmpty] = []
    """More YAML files, each with a top-level offenders: list; entries with * ? [ are globs.
    Default: offenders.d/*.yaml beside this file, where reports write."""
    sources: SourcesConfig = SourcesConfig()
    """Where mail and messages come from."""
    log_format: Literal["json", "logfmt"] = "logfmt"
    """Log line format."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Least severe level logged."""
    warning: WarningConfig | None = None
    """The one cease-contact warning (left out: guardmail never sends anything)."""
    metrics: MetricsConfig | None = None
    """Prometheus metrics on a loopback port (left out: none served)."""
    case: CaseConfig = CaseConfig()
    """The protected person's name and case reference numbers, for the evidence report."""
    aliases: AliasesConfig = AliasesConfig()
    """Suspected aliases of offenders, held for review (see guardmail.core.aliases)."""
    impersonation: ImpersonationConfig = ImpersonationConfig()
    """The person's own addresses: mail forged in their name is quarantined as evidence."""
    evidence: EvidenceConfig = EvidenceConfig()
    """Authenticity checked at receipt (DKIM, ARC, the trusted Authentication-Results) and
    trusted timestamps of the vault's log (RFC 3161)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedConfig:
    """A configuration as loaded: the main file, its settings, and every file read."""

    path: Path
    """The main config file (absolute)."""
    settings: Settings
    """With offenders from offenders_files appended and relative paths resolved."""
    files: tuple[Path, ...]
    """Every file read (the main file first, then offender files), for hot reload."""


def load_config(path: str | os.PathLike[str], *, cwd: Path | None = None) -> LoadedConfig:
    """Load and validate the config at ``path``; ConfigError lists every issue found."""
    base = Path.cwd() if cwd is None else Path(cwd).absolute()
    main_path = base / path
    try:
        main = load_source(main_path, _display(main_path, base))
    except (OSError, UnicodeDecodeError) as exc:
        message = f"cannot read {main_path}: {unreadable_reason(exc)}"
        issue = ConfigIssue(
            file=_display(main_path, base), line=1, column=1, path="(file)", message=message
        )
        raise ConfigError([issue]) from None
    settings, issues = validate(Settings, main)
    entries = list(enumerate(settings.offenders_files)) if settings else _written_entries(main)
    if not (isinstance(main.data, dict) and "offenders_files" in main.data):
        default = os.path.join(glob.escape(str(main_path.parent)), DEFAULT_OFFENDERS_GLOB)
        entries = [(0, default)]
    loaded = _OffenderFiles(main=main, base=base, files=[main_path])
    for index, entry in entries:
        loaded.add(index, entry)
    issues += loaded.issues
    issues += duplicate_offenders([main, *loaded.sources])
    warning, found = _warning_account(settings, main)
    issues += found
    issues += maildir_issues(settings.sources.maildir if settings else [], main, base)
    if issues or settings is None:
        unique = dict.fromkeys(issues)
        raise ConfigError(sorted(unique, key=lambda i: (i.file, i.line, i.column)))
    maildirs = [m.model_copy(update={"path": base / m.path}) for m in settings.sources.maildir]
    state_dir = base / settings.state_dir
    imaps = [i.resolved(base, state_dir) for i in settings.sources.imap]
    xmpps = [x.resolved(base) for x in settings.sources.xmpp]
    smtp_filter = f.resolved(base) if (f := settings.sources.smtp_filter) else None
    final = settings.model_copy(
        update={
            "state_dir": state_dir,
            "offenders": [*settings.offenders, *loaded.offenders],
            "offenders_files": loaded.patterns,
            "sources": settings.sources.model_copy(
                update={
                    "maildir": maildirs,
                    "imap": imaps,
                    "xmpp": xmpps,
                    "smtp_filter": smtp_filter,
                }
            ),
            "warning": warning.resolved(base, state_dir) if warning else None,
            "evidence": settings.evidence.resolved(base),
        }
    )
    return LoadedConfig(path=main_path, settings=final, files=tuple(loaded.files))


def settings_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the main config file."""
    schema = Settings.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "guardmail configuration",
    }


def render_schema() -> str:
    """The schema as ``config/guardmail.schema.json`` holds it."""
    return json.dumps(settings_json_schema(), indent=2, sort_keys=True) + "\n"


def _display(path: Path, base: Path) -> str:
    """How issues name a file: relative to the start directory when under it, else absolute."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def unreadable_reason(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
    return exc.strerror or str(exc)


def _written_entries(main: Source) -> list[tuple[int, str]]:
    """offenders_files as written, when the rest of the main file did not validate."""
    data = main.data
    entries = data.get("offenders_files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [(i, e) for i, e in enumerate(entries) if isinstance(e, str) and e.strip()]


@dataclass(slots=True, kw_only=True)
class _OffenderFiles:
    """Offender files being read for one main file: what they held, and what went wrong."""

    main: Source
    base: Path
    files: list[Path]  # every file read, the main file first
    patterns: list[str] = field(default_factory=list)  # each entry made absolute
    sources: list[Source] = field(default_factory=list)
    offenders: list[OffenderConfig] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)

    def add(self, index: int, entry: str) -> None:
        """Read the file(s) named by ``offenders_files[index]``; problems go to ``issues``."""
        loc = ("offenders_files", index)
        if not GLOB_CHARS.intersection(entry):
            path = self.base / entry
            self.patterns.append(str(path))
            if not path.exists():
                message = f"offenders file {path} does not exist (relative to {self.base})"
                self.issues.append(self.main.issue(loc, message))
                return
            paths = [path]
        elif os.path.isabs(entry):
            self.patterns.append(entry)
            paths = sorted(Path(p) for p in glob.glob(entry) if os.path.isfile(p))
        else:
            self.patterns.append(os.path.join(glob.escape(str(self.base)), entry))
            found = glob.glob(entry, root_dir=self.base)
            paths = sorted(self.base / p for p in found if (self.base / p).is_file())
        for path in paths:
            if path not in self.files:
                self.files.append(path)
                self._read(loc, path)

    def _read(self, loc: tuple[str, int], path: Path) -> None:
        try:
            source = load_source(path, _display(path, self.base))
        except (OSError, UnicodeDecodeError) as exc:
            self.issues.append(
                self.main.issue(loc, f"cannot read {path}: {unreadable_reason(exc)}")
            )
            return
        except ConfigError as exc:
            self.issues += exc.issues
            return
        self.sources.append(source)
        offender_file, issues = validate(OffenderFile, source)
        self.issues += issues
        self.offenders += offender_file.offenders if offender_file else []


def _warning_account(
    settings: Settings | None, main: Source
) -> tuple[WarningConfig | None, list[ConfigIssue]]:
    """The warning with ``xmpp_account`` filled in (channel xmpp), or where it names nothing."""
    warning = settings.warning if settings else None
    if settings is None or warning is None or warning.channel != "xmpp":
        return warning, []
    names = [x.name for x in settings.sources.xmpp]
    if warning.xmpp_account is not None:
        if warning.xmpp_account in names:
            return warning, []
        message = (
            f"no XMPP account named {warning.xmpp_account!r} under sources.xmpp "
            f"(there: {', '.join(names) or 'none'})"
        )
        return None, [main.issue(("warning", "xmpp_account"), message)]
    if len(names) == 1:
        return warning.model_copy(update={"xmpp_account": names[0]}), []
    message = "channel: xmpp sends from an account under sources.xmpp: " + (
        "there is none" if not names else f"name one in xmpp_account ({', '.join(names)})"
    )
    return None, [main.issue(("warning", "channel"), message)]


if __name__ == "__main__":
    sys.stdout.write(render_schema())
