"""One offender as configured, and the files that list offenders (``offenders_files``).

Contracts:
- Every identity kind is validated where it is written: addresses need ``local@domain``, globs
  and regexes are checked by ``core.offender_patterns.check_pattern`` (what RE2 cannot run, and
  what would match every sender, is an issue at the pattern), display-name globs by
  ``check_display_name``; an offender must list something to match.
- An offender's ``id`` (optional) is its stable identity for the at-most-once warning.
- ``duplicate_offenders`` names offenders whose names match ignoring case, across files.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from guardmail.config.yamlfile import STR_TAG, Source
from guardmail.core.offender_patterns import REGEX_PREFIX, check_display_name, check_pattern
from guardmail.errors import ConfigIssue

OFFENDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
GLOB_CHARS = frozenset("*?[")
Action = Literal["quarantine", "block"]


def _stripped(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{value!r} is empty; write a value or leave the key out")
    return stripped


def _address(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    if not (at and local and domain):
        raise ValueError(
            f"{value!r} is not an e-mail address (local@domain); "
            "a whole domain goes under 'domains', a glob under 'patterns'"
        )
    return value.strip()


def _glob(value: str) -> str:
    """Refuse a ``[`` that fnmatch would quietly read as a literal for want of its ``]``."""
    _stripped(value)
    start = value.find("[")
    while start >= 0:
        end = start + 1
        end += value.startswith("!", end)
        end += value.startswith("]", end)
        close = value.find("]", end)
        if close < 0:
            raise ValueError(
                f"glob {value!r} opens '[' at position {start} without a closing ']' "
                "(write '[[]' for a literal '[')"
            )
        start = value.find("[", close + 1)
    return value


def _pattern(value: str) -> str:
    """A glob or ``re:`` regex that RE2 runs (in linear time) and that does not match anyone."""
    if not value.startswith(REGEX_PREFIX):
        _glob(value)
    elif not value[len(REGEX_PREFIX) :]:
        raise ValueError(f"{value!r} has no regex after {REGEX_PREFIX!r}")
    check_pattern(value)
    return value


def _display_name(value: str) -> str:
    _glob(value)
    check_display_name(value)
    return value


def _domain(value: str) -> str:
    domain = _stripped(value)
    if "@" in domain or any(ch in GLOB_CHARS or ch.isspace() for ch in domain):
        raise ValueError(
            f"{value!r} is not a domain name; write it bare, like 'harass.example' "
            "(its subdomains are included; globs go under 'patterns')"
        )
    return domain


def _offender_id(value: str) -> str:
    if not re.fullmatch(OFFENDER_ID_PATTERN, value):
        raise ValueError(
            f"offender id {value!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


NonEmpty = Annotated[str, AfterValidator(_stripped)]
Address = Annotated[str, AfterValidator(_address)]
Pattern = Annotated[str, AfterValidator(_pattern)]
DisplayName = Annotated[str, AfterValidator(_display_name)]
Domain = Annotated[str, AfterValidator(_domain)]


class OffenderConfig(BaseModel):
    """One person to block: the identities they write from, and what to do with their items."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: NonEmpty
    """The label shown in logs, reports and evidence; unique ignoring case."""
    id: Annotated[str, AfterValidator(_offender_id)] | None = Field(
        default=None, json_schema_extra={"pattern": OFFENDER_ID_PATTERN}
    )
    """Stable identity for the at-most-once warning; entries sharing an id are one person.
    Left out: fixed at first sight and kept in state (see guardmail.warner)."""
    greeting_name: NonEmpty | None = None
    """How the warning addresses them ({{ greeting_name }}); left out: no name in the warning."""
    addresses: list[Address] = []
    """Exact e-mail addresses (local@domain)."""
    patterns: list[Pattern] = []
    """Address globs (fnmatch: * ? [...]) or regexes written after "re:" (RE2 syntax: Python's
    without backreferences or lookaround); none may match every sender."""
    domains: list[Domain] = []
    """Sender domains; each covers its subdomains too."""
    display_names: list[DisplayName] = []
    """Globs on the decoded display name; none may match every name."""
    jids: list[NonEmpty] = []
    """XMPP addresses (JIDs)."""
    action: Action = "quarantine"
    """quarantine (move aside, keep) or block (archive, then delete or refuse)."""

    @model_validator(mode="after")
    def _matches_something(self) -> OffenderConfig:
        if not any((self.addresses, self.patterns, self.domains, self.display_names, self.jids)):
            raise ValueError(
                f"offender {self.name!r} has no addresses, patterns, domains, "
                "display_names or jids, so nothing of theirs would be blocked"
            )
        return self


class OffenderFile(BaseModel):
    """A file named by ``offenders_files``: a top-level ``offenders:`` list and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offenders: list[OffenderConfig]


def duplicate_offenders(sources: list[Source]) -> list[ConfigIssue]:
    """Offenders whose names match ignoring case, placed at the second one's ``name``."""
    first: dict[str, tuple[Source, int, yaml.Node]] = {}
    issues: list[ConfigIssue] = []
    for source in sources:
        for index in range(source.count(("offenders",))):
            loc = ("offenders", index, "name")
            node = source.find(loc)
            if node is None or node.tag != STR_TAG or not node.value.strip():
                continue  # not a usable name: validation reports it
            name = node.value.strip()
            there, there_index, there_node = first.setdefault(
                name.casefold(), (source, index, node)
            )
            if there is not source or there_index != index:
                first_at = f"{there.file}:{there_node.start_mark.line + 1}"
                message = (
                    f"offender {name!r} is already defined at {first_at} "
                    "(names are compared ignoring case)"
                )
                issues.append(source.issue(loc, message))
    return issues
