"""Reading the secrets a config names (password files and commands), never logging them."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from guardmail.errors import SecretError

COMMAND_TIMEOUT = 30.0


def read_secret(*, file: Path | None = None, command: Sequence[str] | None = None) -> str:
    """The first line of ``file``, or of what ``command`` prints; SecretError if unreadable."""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"cannot read password file {file}: {why}") from None
        origin = f"password file {file}"
    elif command is not None:
        try:
            done = subprocess.run(
                list(command),
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(f"password command {command[0]!r} failed to run: {exc}") from None
        if done.returncode != 0:
            raise SecretError(
                f"password command {command[0]!r} exited with status {done.returncode}"
            )
        text = done.stdout.decode("utf-8", "replace")
        origin = f"password command {command[0]!r}"
    else:
        raise SecretError("no password file or command configured")
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise SecretError(f"{origin} gave an empty password")
    return secret
