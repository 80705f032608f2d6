"""Hot reload: watch the config and offender files, and reload shortly after they change.

Contracts:
- Watches the directories holding every file the last load read, plus the directories that
  ``offenders_files`` globs look in (a new file there counts), so editors that write a new file and
  rename it over the old one are seen too. A glob's directory that does not exist yet (the
  default ``offenders.d`` before the first report) is watched for through its nearest existing
  ancestor: its creation counts as a change, and the reload then watches inside it.
- Which paths matter is worked out once per loaded config, so an event about an unrelated file
  in a watched directory (the daemon's own log beside the config: one at every line it writes)
  costs a set lookup and one lstat, not a resolve of every file the config read.
- Changes are debounced (``DEBOUNCE`` seconds of quiet) so one save is one reload, well within the
  2 seconds a valid change must take to apply.
- The reload itself (and keeping the last good config when the new one is invalid) is the
  caller's ``reload`` callback, run in the event loop; SIGHUP calls the same callback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from guardmail.config.settings import LoadedConfig

DEBOUNCE = 0.3
# File times come from the kernel's coarse clock, up to a tick behind time_ns(): a file written
# just after a load began may carry an earlier time. Anything this close counts as changed.
COARSE_CLOCK_NS = 50_000_000


def watched_paths(config: LoadedConfig) -> tuple[set[Path], set[Path]]:
    """(files whose change matters, directories to watch)."""
    files = {p.resolve() for p in config.files}
    dirs = {p.parent for p in files}
    for d in glob_dirs(config):
        while not d.is_dir() and d.parent != d:
            d = d.parent  # not there yet: watch where it will be created
        dirs.add(d)
    return files, {d for d in dirs if d.is_dir()}


def glob_dirs(config: LoadedConfig) -> set[Path]:
    """The directories ``offenders_files`` globs look in: new files appear there."""
    dirs = set()
    for pattern in config.settings.offenders_files:
        # The directory part of a glob up to its first wildcard.
        head = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        dirs.add(Path(head if head.endswith(os.sep) else os.path.dirname(head)).resolve())
    return dirs


@dataclass(frozen=True, slots=True, kw_only=True)
class _Interest:
    """The paths whose events matter, resolved once (``watched_paths`` resolves every file)."""

    files: frozenset[str]
    dirs: frozenset[str]  # offenders_files glob directories (their creation counts)
    patterns: tuple[str, ...]

    @classmethod
    def of(cls, config: LoadedConfig) -> _Interest:
        files, _ = watched_paths(config)
        return cls(
            files=frozenset(map(str, files)),
            dirs=frozenset(map(str, glob_dirs(config))),
            patterns=tuple(config.settings.offenders_files),
        )

    def __call__(self, path: str) -> bool:
        """Whether ``path`` (in a watched directory) is, or resolves to, a path that matters.

        Watched directories are resolved already: only the last component can be a link."""
        if path in self.files or path in self.dirs:
            return True
        if os.path.islink(path):
            path = os.path.realpath(path)
            if path in self.files or path in self.dirs:
                return True
        return any(fnmatch(path, p) for p in self.patterns)


class _Changes(FileSystemEventHandler):
    def __init__(self, matters: Callable[[str], bool], poke: Callable[[], None]) -> None:
        self._matters = matters
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths: Iterable[bytes | str] = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(p and self._matters(os.fsdecode(p)) for p in paths):
            self._poke()


class ConfigWatcher:
    """Runs until cancelled; calls ``reload()`` (in the loop) after watched files change."""

    def __init__(
        self,
        config: Callable[[], LoadedConfig],
        reload: Callable[[], bool],
        *,
        loaded_ns: int | None = None,
    ) -> None:
        """``loaded_ns``: when the running config was read (``time.time_ns()`` before reading);
        a file changed since, before the watching began, is reloaded at once."""
        self._config = config
        self._reload = reload
        self._changed = asyncio.Event()
        self._loaded_ns = loaded_ns
        self._interest: tuple[LoadedConfig, _Interest] | None = None

    def _changed_since_load(self) -> bool:
        """Whether a watched file or glob directory changed after the config was read (an edit
        made while the daemon was starting, before the observer ran)."""
        if self._loaded_ns is None:
            return False
        since = self._loaded_ns - COARSE_CLOCK_NS
        files, _ = watched_paths(self._config())
        for path in [*files, *glob_dirs(self._config())]:
            try:
                if path.stat().st_mtime_ns >= since:
                    return True
            except OSError:
                continue
        return False

    def _matters(self, path: str) -> bool:
        """Called in the observer's thread for every event in a watched directory."""
        config = self._config()  # a SIGHUP may have loaded another one meanwhile
        if self._interest is None or self._interest[0] is not config:
            self._interest = (config, _Interest.of(config))
        return self._interest[1](path)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            observer = Observer()

            def poke() -> None:
                loop.call_soon_threadsafe(self._changed.set)

            handler = _Changes(self._matters, poke)
            _, dirs = watched_paths(self._config())
            for d in sorted(dirs):
                observer.schedule(handler, str(d), recursive=False)
            observer.start()
            if self._changed_since_load():
                self._changed.set()
            self._loaded_ns = None  # later reloads are seen by the observer, which now runs
            try:
                await self._changed.wait()
                # Debounce: wait until DEBOUNCE seconds pass with no further change.
                while True:
                    self._changed.clear()
                    try:
                        async with asyncio.timeout(DEBOUNCE):  # not wait_for: test_no_wait_for
                            await self._changed.wait()
                    except TimeoutError:
                        break
                self._changed.clear()
            finally:
                observer.stop()
                await asyncio.to_thread(observer.join)
            self._reload()  # may change which files and directories matter: re-schedule
