"""A terminal client (neomutt) in a private tmux server: keys in, screen text out.

As in shared/recipes/neomutt.md: the environment goes on the command line (``env ...``), since
``new-session -e`` did not reliably reach the client; the screen is read with ``capture-pane``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.conftest import wait_for

TMUX = shutil.which("tmux")


class Tmux:
    """One tmux server on its own socket file, one session running ``command``."""

    def __init__(self, socket: Path, *, width: int = 120, height: int = 30) -> None:
        if TMUX is None:
            raise RuntimeError("tmux is not installed")
        self._base = [TMUX, "-S", str(socket)]
        self._size = (width, height)
        self.started = False

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._base, *args], capture_output=True, text=True, timeout=15, check=False
        )

    def start(self, command: Sequence[str], env: Mapping[str, str], *, cwd: Path) -> None:
        line = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command])
        width, height = self._size
        done = self._tmux(
            "new-session",
            "-d",
            "-s",
            "main",
            "-c",
            str(cwd),
            "-x",
            str(width),
            "-y",
            str(height),
            line,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tmux new-session failed: {done.stderr}")
        self.started = True
        # Keep the pane after the program exits, so its last screen can still be read.
        self._tmux("set-option", "-t", "main", "remain-on-exit", "on")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._tmux("send-keys", "-t", "main", *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main").stdout

    def wait_screen(
        self, predicate: Callable[[str], bool], *, what: str, timeout: float = 20.0
    ) -> str:
        """The screen once ``predicate`` holds for it; fails showing the last screen."""
        seen = [""]

        def check() -> bool:
            seen[0] = self.screen()
            return predicate(seen[0])

        try:
            wait_for(check, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last screen:\n{seen[0]}") from None
        return seen[0]

    def dead(self) -> bool:
        return (
            self._tmux("display-message", "-p", "-t", "main", "#{pane_dead}").stdout.strip() == "1"
        )

    def close(self) -> None:
        if self.started:
            self._tmux("kill-server")
            self.started = False
