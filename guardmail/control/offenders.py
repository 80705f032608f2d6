"""The offenders file that reports write: ``offenders.d/reported.yaml`` beside the config.

Contracts:
- This is the only file a report writes. The user's hand-written config, with its comments, is
  never rewritten; it has to load this file for the daemon to act on what reports add. A config
  that leaves ``offenders_files`` out loads ``offenders.d/*.yaml`` beside it, so it does; one
  whose ``offenders_files`` miss it gets ``load_hint``: exactly what to change.
- The file is an ordinary offenders file (a top-level ``offenders:`` list). It is rewritten whole,
  atomically (temp file, fsync, rename, directory fsync), keeping its mode, under an exclusive
  ``flock`` on a lock file beside it that the daemon and the ``guardmail report`` CLI share.
- ``plan`` changes nothing on disk and only proposes entries the configuration accepts:
  each is a valid ``OffenderConfig`` and names stay unique ignoring case across every file.
- Names are unique across files, so an offender from the hand-written config cannot be extended
  here in place: aliases reported for ``NAME`` go to an entry named ``NAME (reported)`` that
  carries ``NAME``'s id (``ids``), so both are one person to the warning ledger: one warning.
- Every entry this file gains gets an ``id:`` (a new offender a fresh one), so renaming it by
  hand later keeps its warning state.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from guardmail.config.settings import LoadedConfig, OffenderConfig, OffenderFile
from guardmail.config.yamlfile import load_source, validate
from guardmail.errors import ConfigError, GuardmailError
from guardmail.offender_registry import new_id
from guardmail.vault.blobs import write_durably

REPORTED_DIR = "offenders.d"
REPORTED_FILE = "reported.yaml"
ALIAS_SUFFIX = " (reported)"

HEADER = """\
# Written by guardmail: offenders and aliases reported from mail and chat clients
# (`guardmail report`, the Thunderbird add-on, the neomutt macro, the Gajim plugin).
# Your main config loads it unless its offenders_files leave out "{glob}"
# You may edit it by hand; guardmail rewrites it whole (comments here are not kept).
"""

Key = Literal["addresses", "jids"]


class BadReport(GuardmailError):
    """The report cannot be carried out as asked (no sender, unknown or taken offender name).

    Nothing was archived or written. ``guardmail report`` exits 2 on it.
    """


def reported_path(config_path: Path) -> Path:
    """Where reports write for the config at ``config_path``."""
    return config_path.parent / REPORTED_DIR / REPORTED_FILE


def loads_reported(config: LoadedConfig, path: Path) -> bool:
    """Whether ``config``'s ``offenders_files`` cover ``path`` (as written or as a glob)."""
    target = os.path.normpath(path)
    return any(
        fnmatchcase(target, os.path.normpath(pattern))
        for pattern in config.settings.offenders_files
    )


def load_hint(config: LoadedConfig, path: Path) -> str:
    """The exact change that makes ``config`` load ``path``, for a person to make."""
    entry = f'"{path.parent / "*.yaml"}"'
    if config.settings.offenders_files:
        return f"add {entry} to the offenders_files list in {config.path}"
    return (
        f"write offenders_files: [{entry}] in {config.path}, "
        f"or leave offenders_files out (it then loads {entry})"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Addition:
    """One identity a report adds to the file: ``key`` of offender ``offender``."""

    offender: str
    key: Key
    value: str
    created: bool

    def describe(self) -> str:
        made = "new offender" if self.created else "offender"
        return f"{self.key}: {self.value} ({made} {self.offender!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a report will do to the file: the entries to write, and the one identity added."""

    entries: tuple[OffenderConfig, ...]
    addition: Addition


class ReportedFile:
    """``offenders.d/reported.yaml`` of one configuration."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock that every writer of this file takes (blocks until free)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def read(self) -> list[OffenderConfig]:
        """The offenders in the file now (none if it does not exist); ConfigError if invalid."""
        if not self.path.exists():
            return []
        source = load_source(self.path, str(self.path))
        loaded, issues = validate(OffenderFile, source)
        if issues or loaded is None:
            raise ConfigError(issues)
        return list(loaded.offenders)

    def write(self, entries: Sequence[OffenderConfig]) -> None:
        """Replace the file's offenders with ``entries`` (atomically, keeping its mode)."""
        body = yaml.safe_dump(
            {"offenders": [e.model_dump(mode="json", exclude_defaults=True) for e in entries]},
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
        text = HEADER.format(glob=self.path.parent / "*.yaml") + body
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
        write_durably(self.path, text.encode("utf-8"))
        os.chmod(self.path, mode)


def _entry(
    name: str, key: Key, values: Sequence[str], action: str, offender_id: str | None = None
) -> OffenderConfig:
    fields = {"name": name, key: list(values), "action": action}
    if offender_id is not None:
        fields["id"] = offender_id
    try:
        return OffenderConfig.model_validate(fields)
    except ValidationError as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise BadReport(f"cannot add {values[-1]!r} to offender {name!r}: {reason}") from None


def plan(
    *,
    hand_written: Sequence[OffenderConfig],
    reported: Sequence[OffenderConfig],
    key: Key,
    value: str,
    offender: str | None,
    new_offender: str | None,
    action: str,
    ids: Mapping[str, str] | None = None,
) -> Plan:
    """Add ``value`` under ``key`` to the right entry of ``reported``.

    ``offender`` names an existing offender (hand-written or reported) to add an alias to;
    ``new_offender`` a new one; with neither, the new offender is named after ``value``.
    ``ids`` are the offenders' ids by case-folded name (``Warner.ids``).
    """
    ids = ids or {}
    offender_id: str | None = new_id()  # a new offender's; an alias entry takes its parent's
    entries = list(reported)
    find = {e.name.casefold(): i for i, e in enumerate(entries)}
    config_names = {o.name.casefold(): o for o in hand_written}
    name = (new_offender or offender or value).strip()
    if not name:
        raise BadReport("the offender name is empty")
    folded = name.casefold()
    exists = folded in find or folded in config_names
    if new_offender is not None and exists:
        raise BadReport(
            f"offender {name!r} already exists; use --offender {name!r} to add an alias to it"
        )
    if offender is not None and not exists:
        raise BadReport(f"no offender is named {name!r}; use --new-offender {name!r} to create it")
    if folded in config_names and folded not in find:
        # Defined in the hand-written config: its reported aliases live in their own entry.
        action = config_names[folded].action
        offender_id = config_names[folded].id or ids.get(folded)
        name = f"{config_names[folded].name}{ALIAS_SUFFIX}"
        folded = name.casefold()
        if folded in config_names:
            raise BadReport(f"offender {name!r} is taken in the hand-written config")
    if folded in find:
        index = find[folded]
        old = entries[index]
        values = [*getattr(old, key), value]
        checked = _entry(old.name, key, values, old.action)
        kept_id = old.id or ids.get(old.name.casefold())
        entries[index] = old.model_copy(update={key: getattr(checked, key), "id": kept_id})
        addition = Addition(offender=old.name, key=key, value=value, created=False)
    else:
        entries.append(_entry(name, key, [value], action, offender_id))
        addition = Addition(offender=name, key=key, value=value, created=True)
    return Plan(entries=tuple(entries), addition=addition)
