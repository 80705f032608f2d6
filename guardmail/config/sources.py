"""Configuration of the sources (Maildir, IMAP, SMTP filter, XMPP): validated at the config edge
like settings.py. Each kind but Maildir has its own module (imap_source, smtp_filter,
xmpp_source), with its contracts.

Contracts:
- Account names are unique: they key checkpoints and evidence.
- A Maildir path that is not a Maildir is refused unless the entry says ``create: true``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.fields import DirPath, NonEmpty
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.config.yamlfile import Source
from guardmail.errors import ConfigIssue


def _folder(value: str) -> str:
    if not value or "/" in value or value.startswith("."):
        raise ValueError(
            f"{value!r} is not a Maildir++ folder name (no '/', no leading '.'; "
            "'Quarantine' is stored as .Quarantine)"
        )
    return value


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
