"""The last good configuration the daemon runs, kept in its state directory for read-only commands.

A broken edit of the config file must not leave the person without ``status`` or ``evidence
list`` exactly while the daemon protects them with the last good configuration: those commands
fall back to what the daemon runs, and say that the file on disk has errors.

Contracts:
- ``record`` writes ``last-good-config.json`` (0600, atomically and durably) into the state
  directory the daemon runs: the config file's absolute path, the SHA-256 of its text, when it
  was loaded, and the resolved settings (the offenders of every file included). The daemon calls
  it after every successful start and reload. ``state_dir`` and ``tenant`` recorded are the ones
  the daemon runs: a reload does not move them (that needs a restart).
- ``recall`` returns that configuration only when it was recorded for the same config file
  (compared after resolving symlinks) and validates as Settings; anything else (missing,
  unreadable, not JSON, another file's) is None, never an exception.
- ``state_dir_of`` guesses where the daemon keeps its state for a config file that does not
  load: ``state_dir`` as written in it when the YAML still says one, else ``./var`` (the
  default), either relative to the start directory as ``load_config`` resolves it.
- The record holds what the config file holds (paths, names, addresses, never a password: those
  live in password files or commands); it is as private as the rest of the state directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from guardmail.config.settings import LoadedConfig, Settings
from guardmail.config.yamlfile import load_source
from guardmail.errors import ConfigError
from guardmail.vault.blobs import write_durably

LAST_GOOD_FILE = "last-good-config.json"
DEFAULT_STATE_DIR = Settings.model_fields["state_dir"].default


@dataclass(frozen=True, slots=True, kw_only=True)
class LastGood:
    """A configuration the daemon recorded as running, and when it loaded it."""

    config: LoadedConfig
    loaded_at: str
    sha256: str


def record(config: LoadedConfig, *, running: Settings, now: datetime) -> None:
    """Write ``config`` as the last good one into ``running.state_dir``; OSError propagates.

    ``running`` is what the daemon started with: its state_dir and tenant are kept.
    """
    try:
        text = config.path.read_bytes()
    except OSError:
        text = b""  # changed or gone since it loaded: the settings below are what counts
    settings = config.settings.model_copy(
        update={"state_dir": running.state_dir, "tenant": running.tenant}
    )
    data = {
        "config": str(config.path.resolve()),
        "sha256": hashlib.sha256(text).hexdigest(),
        "loaded_at": now.isoformat(timespec="seconds"),
        "settings": settings.model_dump(mode="json"),
    }
    body = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode()
    write_durably(running.state_dir / LAST_GOOD_FILE, body)


def recall(config_path: Path, state_dir: Path) -> LastGood | None:
    """The last good configuration recorded in ``state_dir`` for ``config_path``, or None."""
    try:
        data = json.loads((state_dir / LAST_GOOD_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("config") != str(config_path.resolve()):
        return None
    try:
        settings = Settings.model_validate(data.get("settings"))
    except ValidationError:
        return None
    return LastGood(
        config=LoadedConfig(path=config_path, settings=settings, files=()),
        loaded_at=str(data.get("loaded_at")),
        sha256=str(data.get("sha256")),
    )


def state_dir_of(config_path: Path, *, cwd: Path) -> Path:
    """Where a daemon run on the (broken) config at ``config_path`` keeps its state."""
    written: object = None
    try:
        data = load_source(config_path, str(config_path)).data
    except (OSError, UnicodeDecodeError, ConfigError):
        data = None
    if isinstance(data, dict):
        written = data.get("state_dir")
    if not isinstance(written, str) or not written.strip():
        written = DEFAULT_STATE_DIR
    return cwd / Path(str(written))
