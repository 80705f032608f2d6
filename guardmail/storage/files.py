"""guardmail's own directories and files under the state directory: private, and tidy.

Contracts:
- Every directory guardmail creates under the state directory is 0700 and every file 0600,
  whatever the umask: the mode is set with chmod after creation, not left to ``mkdir``'s mode
  argument (which the umask trims and which ``parents=True`` ignores for the parents).
- A state or vault directory found readable by group or others is tightened to 0700, and a
  ``state.permissions_tightened`` warning event says so (the evidence is private to one person).
- Temp files left by a process that died while writing (``.NAME.PID.TID.tmp``, see
  ``vault.store.write_durably``) are removed at start-up, only in the directories named by the
  caller (guardmail's own), only if older than this process and their writer is not running.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from pathlib import Path

from guardmail.logs import event

# When this process started (close enough: when guardmail was imported).
PROCESS_START = time.time()
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_TEMP = re.compile(r"\..+\.(\d+)\.(\d+)\.tmp")


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700 (umask-proof). NotADirectoryError if
    one of them is something else."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        if p.exists() or p.is_symlink():
            raise NotADirectoryError(
                errno.ENOTDIR, "exists but is not a directory (guardmail needs one here)", str(p)
            )
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        d.chmod(PRIVATE_DIR)


def tighten(path: Path) -> None:
    """Make an existing directory of ours 0700 if group or others may use it, and say so."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(PRIVATE_DIR)
        event(
            "state.permissions_tightened",
            level=logging.WARNING,
            path=str(path),
            was=f"{mode:04o}",
            now=f"{PRIVATE_DIR:04o}",
        )


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process: not ours to judge
    return True


def remove_stale_temps(directory: Path, *, before: float = PROCESS_START) -> list[Path]:
    """Remove the temp files a dead writer left in ``directory`` (not below it); the removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= before or (
                pid != os.getpid() and _running(pid)
            ):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed.append(Path(entry.path))
        event("state.stale_temp_removed", level=logging.WARNING, path=entry.path)
    return removed
